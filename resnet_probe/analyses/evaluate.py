"""Plain evaluation: accuracy of the unchanged model (the `eval` command)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from resnet_probe.analyses.base import METRIC, Analysis, RunContext
from resnet_probe.errors import PlanError
from resnet_probe.executor import Plan
from resnet_probe.metrics import MetricLike, concrete_name, perplexity, resolve_metric
from resnet_probe.results import Result

if TYPE_CHECKING:
    import pandas as pd
from resnet_probe.scoring import interval, score_plans


@dataclass(frozen=True)
class EvaluateResult(Result):
    """Accuracy as a fraction with its interval, correct count, images scored and mean cross-entropy.

    The interval is Wilson's, or with adaptive evaluation (``--tolerance``) the anytime-valid
    confidence sequence the stop was decided on.
    """

    analysis: ClassVar[str] = "evaluate"
    accuracy: float
    correct: int
    n: int
    loss: float
    ci: tuple[float, float] = (0.0, 1.0)
    hits: str | None = None
    metric: str = "top1"
    metric_kind: str = "hit"  # "loss"/"mean": ``value`` is a mean per example, ``ci`` its t interval
    value: float | None = None  # the metric's mean (None in older files: the accuracy)
    values: str | None = None  # a loss metric's per-example values, packed (stats.pack_floats)

    @property
    def score(self) -> float:
        """The metric's value."""
        return self.accuracy if self.value is None else self.value

    def mean_text(self, level: str, examples: str = "examples") -> str:
        """A loss or mean metric in one clause: its mean, t interval, direction (and perplexity, accuracy)."""
        lo, hi = self.ci
        if self.metric_kind == "loss":
            text = (f"mean {self.metric} {self.score:.4f} per example over {self.n} {examples} ({level} t interval "
                    f"[{lo:.4f}, {hi:.4f}]; lower is better)")
            if self.hits is None and self.metric == "loss":
                text += (f", perplexity {perplexity(self.score):.2f} "
                         f"[{perplexity(lo):.2f}, {perplexity(hi):.2f}] (exp of the mean token loss)")
        else:
            text = (f"mean {self.metric} {100 * self.score:.2f} % per example over {self.n} {examples} ({level} t "
                    f"interval [{100 * lo:.2f}, {100 * hi:.2f}] %; higher is better)")
        if self.hits is not None:
            text += f"; top-1 accuracy {100 * self.accuracy:.2f} %"
        return text

    def to_frame(self) -> pd.DataFrame:
        """One row: accuracy, the metric's interval, correct, images, loss (and the metric's own column)."""
        import pandas as pd

        own = {} if self.metric in ("top1", "loss") else {self.metric: self.score}
        return pd.DataFrame([{"accuracy": self.accuracy, "ci_low": self.ci[0], "ci_high": self.ci[1],
                              "correct": self.correct, "n": self.n, "loss": self.loss} | own])


class EvaluateAnalysis(Analysis):
    """Top-1 accuracy and loss of the model as it is."""

    name = "evaluate"
    description = "top-1 accuracy and cross-entropy of the unchanged model"
    result_type = EvaluateResult
    batch_probe = True
    options = (METRIC,)

    def run(self, ctx: RunContext, metric: MetricLike = "auto", **options: Any) -> EvaluateResult:
        """Score the empty plan over the whole data set by ``metric`` (default top-1)."""
        if options:
            raise PlanError(f"evaluate: unknown options {', '.join(sorted(options))}; valid: metric")
        data = ctx.require_data(self.name)
        chosen = resolve_metric(metric)
        with ctx.progress("eval", len(data)) as advance:
            (score,) = score_plans(
                ctx.executor, data, [Plan()], batch_size=ctx.batch_size,
                preprocessing=ctx.preprocessing, progress=advance, stop=ctx.stopping, metric=chosen,
            )
        return EvaluateResult(
            score.accuracy, score.correct, score.n, score.loss, interval(score, ctx.confidence), score.hits,
            concrete_name(chosen.name, score.kind), score.kind, score.value, score.values,
        )
