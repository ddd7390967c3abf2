"""Plain evaluation: accuracy of the unchanged model (the `eval` command)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..evaluate import score_plans
from ..executor import Plan
from ..results import Result
from .base import Analysis, RunContext


@dataclass(frozen=True)
class EvalResult(Result):
    """Accuracy as a fraction, correct count, images and mean cross-entropy."""

    analysis: ClassVar[str] = "eval"
    accuracy: float
    correct: int
    n: int
    loss: float


class EvalAnalysis(Analysis):
    """Top-1 accuracy and loss of the model as it is."""

    name = "eval"
    description = "top-1 accuracy and cross-entropy of the unchanged model"
    result_type = EvalResult

    def run(self, ctx: RunContext, **options: Any) -> EvalResult:
        """Score the empty plan over the whole data set."""
        data = ctx.require_data(self.name)
        with ctx.progress("eval", len(data)) as advance:
            (score,) = score_plans(
                ctx.executor, data, [Plan()], batch_size=ctx.batch_size,
                preprocessing=ctx.preprocessing, progress=advance,
            )
        return EvalResult(score.accuracy, score.correct, score.n, score.loss)
