"""What a configuration is scored by: one value per example.

A *hit* metric (``top1``, ``top5``, a callable returning bools) keeps today's statistics:
the share of hits with its Wilson interval, exact McNemar against the unchanged model. A
*loss* metric (``loss``, a callable returning floats) is a mean per example with a t interval
and a paired sign-flip permutation test per example (Holm across the run); lower is better.
A *mean* metric (``next_token``) has a loss's statistics, but higher is better: a share per
example that is not one hit, e.g. the fraction of a sequence's next tokens predicted right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Union

import torch
from torch import Tensor

from resnet_probe.errors import MetricError, first_line

MetricFn = Callable[[Tensor, Any], Tensor]
MetricLike = Union[str, MetricFn, "Metric"]
HIT, LOSS, MEAN = "hit", "loss", "mean"
KINDS = (HIT, LOSS, MEAN)
FLOATS = (LOSS, MEAN)  # a float per example: t interval of the mean, paired sign-flip test


@dataclass(frozen=True)
class Metric:
    """A named per-example metric; ``kind`` None means "read from the first values" (a callable)."""

    name: str
    fn: MetricFn
    kind: str | None
    description: str = ""

    @property
    def higher_is_better(self) -> bool:
        """Hits count up; losses count down."""
        return self.kind != LOSS

    def values(self, logits: Tensor, targets: Any) -> Tensor:
        """One value per example: bools for a hit metric, float64 for a loss; a MetricError if not."""
        batch = int(logits.shape[0])
        try:
            out = self.fn(logits, targets)
        except MetricError:
            raise
        except Exception as exc:  # the user's callable may raise anything
            raise MetricError(f"metric {self.name!r} fails ({first_line(exc)})") from None
        if not isinstance(out, Tensor):
            raise MetricError(
                f"metric {self.name!r} returns a {type(out).__name__}; expected a tensor of {batch} values"
            )
        if out.dim() != 1 or out.shape[0] != batch:
            raise MetricError(
                f"metric {self.name!r} returns shape {tuple(out.shape)} for a batch of {batch}; expected ({batch},)"
            )
        if out.dtype == torch.bool:
            kind = HIT
        elif out.is_floating_point():
            kind = LOSS
        else:
            raise MetricError(f"metric {self.name!r} returns {out.dtype}; expected bool (a hit) or float (a loss)")
        if kind == LOSS and self.kind == MEAN:
            kind = MEAN
        if self.kind is not None and kind != self.kind:
            raise MetricError(f"metric {self.name!r} returned {kind} values after {self.kind} values")
        if kind in FLOATS:
            out = out.detach().double()
            if not bool(torch.isfinite(out).all()):
                raise MetricError(f"metric {self.name!r} returns NaN or infinite values; expected finite losses")
        return out.detach()

    def with_kind(self, kind: str) -> Metric:
        """This metric with its kind fixed (a callable's, once its first values are seen)."""
        return Metric(self.name, self.fn, kind, self.description)


def class_targets(logits: Tensor, targets: Any, name: str) -> Tensor:
    """Targets as class indices for ``logits``, or a MetricError saying what they are instead."""
    if not isinstance(targets, Tensor) or targets.dim() != 1 or targets.shape[0] != logits.shape[0]:
        shape = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
        raise MetricError(f"{name} needs one class index per example, got targets {shape}")
    if targets.dtype in (torch.bool,) or targets.is_floating_point() or targets.is_complex():
        raise MetricError(f"{name} needs integer class indices, got targets of dtype {targets.dtype}")
    classes = int(logits.shape[1])
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= classes):
        bad = targets[(targets < 0) | (targets >= classes)].unique()[:5].tolist()
        raise MetricError(
            f"targets outside [0, {classes}) (e.g. {', '.join(map(str, bad))}): the model predicts {classes} classes"
        )
    return targets.long()


def _top1(logits: Tensor, targets: Any) -> Tensor:
    return logits.argmax(dim=1) == class_targets(logits, targets, "top1")


def _top5(logits: Tensor, targets: Any) -> Tensor:
    y = class_targets(logits, targets, "top5")
    if logits.shape[1] < 5:
        raise MetricError(f"top5 needs at least 5 classes; the model predicts {logits.shape[1]}")
    return (logits.topk(5, dim=1).indices == y[:, None]).any(dim=1)


def _loss(logits: Tensor, targets: Any) -> Tensor:
    if logits.dim() == 3:
        return sequence_loss(logits, targets)
    y = class_targets(logits, targets, "loss")
    return torch.nn.functional.cross_entropy(logits.float(), y, reduction="none")


def sequence_loss(logits: Tensor, ids: Any) -> Tensor:
    """Each sequence's mean next-token cross-entropy: the paired unit of a causal LM is a sequence, not a token.

    ``logits`` (batch, seq, vocab) predict ``ids`` (batch, seq) one position ahead.
    """
    _check_ids(logits, ids, "a language-model loss")
    batch, seq, vocab = logits.shape
    flat = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().reshape(-1, vocab), ids[:, 1:].long().reshape(-1), reduction="none"
    )
    return flat.view(batch, seq - 1).mean(dim=1)


def _check_ids(logits: Tensor, ids: Any, what: str) -> None:
    if logits.dim() != 3:
        raise MetricError(f"{what} is a language-model metric; the model gives {tuple(logits.shape)} outputs, "
                          "not (batch, seq, vocab)")
    batch, seq, vocab = logits.shape
    if not isinstance(ids, Tensor) or ids.shape != (batch, seq) or ids.is_floating_point():
        shape = tuple(ids.shape) if isinstance(ids, Tensor) else type(ids).__name__
        raise MetricError(f"{what} needs token ids ({batch}, {seq}) beside the logits, got {shape}")
    if seq < 2:
        raise MetricError(f"{what} needs sequences of at least 2 tokens (one to predict from)")
    if int(ids.min()) < 0 or int(ids.max()) >= vocab:
        raise MetricError(f"token ids outside [0, {vocab}): the model's vocabulary has {vocab} entries")


def next_token_accuracy(logits: Tensor, ids: Any) -> Tensor:
    """Each sequence's share of next tokens predicted right (top-1): ``logits[:, t]`` predicts ``ids[:, t + 1]``."""
    _check_ids(logits, ids, "next_token")
    return (logits[:, :-1].argmax(dim=-1) == ids[:, 1:]).double().mean(dim=1)


def perplexity(mean_loss: float) -> float:
    """Perplexity of a mean per-token loss in nats (equal-length sequences: the mean of the sequence means)."""
    return math.exp(mean_loss)


NAMED: dict[str, Metric] = {
    "top1": Metric("top1", _top1, HIT, "top-1 accuracy"),
    "top5": Metric("top5", _top5, HIT, "top-5 accuracy"),
    "loss": Metric("loss", _loss, LOSS, "cross-entropy per example"),
    "next_token": Metric("next_token", next_token_accuracy, MEAN, "share of a sequence's next tokens predicted right"),
}
AUTO = "auto"  # top1 for classifiers, the per-sequence mean token loss for causal language models
NAMED[AUTO] = Metric(AUTO, _top1, None, "top1 for (batch, classes) outputs, loss for (batch, seq, vocab)")
DEFAULT = AUTO


def for_outputs(metric: Metric, logits: Tensor) -> Metric:
    """``auto`` made concrete for these outputs: top-1 for (batch, classes), the sequence loss for a causal LM."""
    if metric.name != AUTO:
        return metric
    return NAMED["loss"] if logits.dim() == 3 else NAMED["top1"]


def concrete_name(name: str, kind: str) -> str:
    """The metric ``auto`` turned out to be (from the kind of its values), else ``name``."""
    return ("loss" if kind == LOSS else "top1") if name == AUTO else name


def resolve_metric(metric: MetricLike | None) -> Metric:
    """A :class:`Metric` from a name, a callable ``(outputs, targets) -> values`` or a Metric."""
    if metric is None:
        return NAMED[DEFAULT]
    if isinstance(metric, Metric):
        return metric
    if isinstance(metric, str):
        found = NAMED.get(metric)
        if found is None:
            raise MetricError(f"unknown metric {metric!r}; valid: {', '.join(NAMED)} or a callable")
        return found
    if callable(metric):
        name = getattr(metric, "__name__", type(metric).__name__)
        return Metric(name if name != "<lambda>" else "custom", metric, None, "a metric passed in")
    raise MetricError(f"metric {metric!r}: expected one of {', '.join(NAMED)} or a callable (outputs, targets)")
