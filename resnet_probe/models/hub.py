"""Build any torchvision or timm classification model by name, with its preprocessing.

Every name the library lists is let through: which adapter reads the model (a hand-written
one, else discovery by tracing) is decided by what the built model is, never by its name, so
a model without residual units is refused there, in one line. Only the weight download is
guarded: a failure there becomes one :class:`OfflineError` line that points to
``--checkpoint``. Everything else (bad names, bad tags) fails before it.
"""

from __future__ import annotations

import difflib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlparse

from torch import nn

from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.errors import CheckpointError, OfflineError, UnknownModelError
from resnet_probe.models.registry import natural_key


def torchvision_names() -> list[str]:
    """torchvision's classification models (``torchvision.models``, not detection or video)."""
    from torchvision import models

    return _familiar_first(models.list_models(module=models))


def timm_names() -> list[str]:
    """Every timm model (``timm.list_models()``)."""
    import timm

    return _familiar_first(timm.list_models())


def _familiar_first(names: list[str]) -> list[str]:
    """Plain resnet* first: the excerpt in error messages should show the familiar names."""
    return sorted(names, key=lambda n: (not n.startswith("resnet"), natural_key(n)))


def build_torchvision(
    name: str, pretrained: bool, num_classes: int | None = None, tag: str | None = None
) -> tuple[nn.Module, Preprocessing | None]:
    """A torchvision classification model in eval mode; preprocessing only where named weights define it.

    ``tag`` names a weights enum member (``IMAGENET1K_V1``); pretrained uses the default
    weights otherwise. A tag without ``pretrained`` only selects the preprocessing.

    Example:
        >>> model, prep = build_torchvision("resnet18", pretrained=False, num_classes=10)
    """
    from torchvision import models

    valid = torchvision_names()
    if name not in valid:
        raise UnknownModelError(_unknown("torchvision", "tv", name, valid))
    weights = _tv_weights(name, tag) if pretrained or tag else None
    if weights is None:
        return models.get_model(name, weights=None, num_classes=num_classes or 1000).eval(), None
    n_classes = len(weights.meta["categories"])
    if pretrained and num_classes is not None and num_classes != n_classes:
        raise CheckpointError(
            f"pretrained tv:{name} has {n_classes} classes, not {num_classes}; "
            "drop num_classes or pass --checkpoint PATH"
        )
    model = models.get_model(name, weights=None, num_classes=num_classes or n_classes)
    if pretrained:
        try:
            state = weights.get_state_dict(progress=False, check_hash=True)
        except Exception as exc:  # network, DNS, proxy, truncated file, hash: all mean "no weights here"
            raise OfflineError(_offline(f"tv:{name}", exc)) from None
        model.load_state_dict(state)
    t = weights.transforms()
    prep = Preprocessing(
        mean=tuple(float(v) for v in t.mean),
        std=tuple(float(v) for v in t.std),
        input_size=int(t.crop_size[0]),
        source="torchvision",
    )
    return model.eval(), prep


def _tv_weights(name: str, tag: str | None) -> Any:
    """The weights enum member ``tag`` of model ``name``, or its default."""
    from torchvision import models

    enum = models.get_model_weights(name)
    if tag is None:
        return enum.DEFAULT
    if tag not in enum.__members__:
        raise UnknownModelError(f"unknown weights tv:{name}.{tag}; valid tags: {', '.join(enum.__members__)}")
    return enum[tag]


def build_timm(
    name: str, tag: str | None, pretrained: bool, num_classes: int | None = None
) -> tuple[nn.Module, Preprocessing]:
    """Any timm model in eval mode with its data config as preprocessing.

    Example:
        >>> model, prep = build_timm("resnet50", "a1_in1k", pretrained=False)
    """
    import timm
    import timm.models

    spec = f"timm:{name}" + (f".{tag}" if tag else "")
    if not timm.is_model(name):
        raise UnknownModelError(_unknown("timm", "timm", name, timm_names()))
    tags = [t.partition(".")[2] for t in timm.list_models(f"{name}.*", include_tags=True)]
    if tag is not None and tag not in tags:
        raise UnknownModelError(f"unknown tag {spec}; valid tags: {', '.join(tags) or '(none)'}")

    kwargs: dict[str, Any] = {} if num_classes is None else {"num_classes": num_classes}
    model: Any = timm.create_model(f"{name}.{tag}" if tag else name, pretrained=False, **kwargs)
    if pretrained:
        full = f"{name}.{model.pretrained_cfg.get('tag')}"
        if not timm.list_pretrained(full):
            with_weights = [t.partition(".")[2] for t in timm.list_pretrained(f"{name}.*")]
            hint = f"tags with weights: {', '.join(with_weights)}" if with_weights else "pass --checkpoint PATH"
            raise UnknownModelError(f"timm:{full} has no pretrained weights; {hint}")
        try:
            with _hub_cache_only_when_unreachable():
                timm.models.load_pretrained(model, num_classes=model.num_classes, in_chans=model.in_chans)
        except Exception as exc:  # HF hub / URL / cache errors: all mean "no weights here"
            raise OfflineError(_offline(spec, exc)) from None
    cfg = timm.data.resolve_data_config({}, model=model)
    prep = Preprocessing(
        mean=tuple(float(v) for v in cfg["mean"]),
        std=tuple(float(v) for v in cfg["std"]),
        input_size=int(cfg["input_size"][-1]),
        source="timm",
    )
    return model.eval(), prep


@contextmanager
def _hub_cache_only_when_unreachable() -> Iterator[None]:
    """Hugging Face Hub offline mode while its host does not resolve.

    Unreachable, huggingface_hub retries every candidate file with back-off for ~25 s each
    before it gives up; in offline mode it answers from its cache at once (or fails at once).
    """
    try:
        import huggingface_hub.constants as hf
    except ImportError:
        yield
        return
    host = urlparse(hf.ENDPOINT).hostname or ""
    try:
        socket.getaddrinfo(host, 443)
        reachable = True
    except OSError:
        reachable = False
    saved = hf.HF_HUB_OFFLINE
    hf.HF_HUB_OFFLINE = saved or not reachable
    try:
        yield
    finally:
        hf.HF_HUB_OFFLINE = saved


def _offline(spec: str, exc: BaseException) -> str:
    """The one-line OfflineError message, with the first line of the cause."""
    text = " ".join(str(exc).split()).split(". ")[0]
    cause = (text[:157] + "...") if len(text) > 160 else (text or type(exc).__name__)
    return (
        f"cannot download pretrained weights for {spec} (offline?): {cause}; pass --checkpoint PATH with a local copy"
    )


def _unknown(library: str, source: str, name: str, valid: list[str]) -> str:
    """The one-line UnknownModelError message, closest names first."""
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.6)
    hint = f"did you mean {', '.join(f'{source}:{n}' for n in close)}? " if close else ""
    return f"unknown {library} model {source}:{name}; {hint}valid: {_few(valid)}"


def _few(names: list[str], limit: int = 12) -> str:
    """A short, comma-separated excerpt of ``names``."""
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more

