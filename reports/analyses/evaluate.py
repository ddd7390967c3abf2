"""Report content for plain evaluation."""

from __future__ import annotations

from resnet_probe.reports.content import register

from resnet_probe.analyses.evaluate import EvaluateResult
from resnet_probe.results import RunRecord


@register(EvaluateResult)
def eval_reading(result: EvaluateResult, record: RunRecord) -> list[str]:
    """One sentence: accuracy and loss."""
    return [
        f"{record.model.get('spec')} classifies {result.correct} of {result.n} images correctly "
        f"({100 * result.accuracy:.2f} %, error {100 * (1 - result.accuracy):.2f} %); "
        f"mean cross-entropy {result.loss:.4f}."
    ]
