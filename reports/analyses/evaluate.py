"""Report content for plain evaluation."""

from __future__ import annotations

from resnet_probe.reports.content import (
    adaptive_sentence,
    interval_text,
    level_of,
    level_value,
    register,
    smallest_detectable,
)

from resnet_probe.analyses.evaluate import EvaluateResult
from resnet_probe.results import RunRecord


@register(EvaluateResult)
def eval_reading(result: EvaluateResult, record: RunRecord) -> list[str]:
    """Accuracy with its interval and loss; what these images can tell apart."""
    total = int(record.data.get("n", result.n)) if record.data else result.n
    if result.metric_kind != "hit":
        from resnet_probe.reports.analyses.lesion import examples_word

        return [f"{record.model.get('spec')}: {result.mean_text(level_of(record), examples_word(record))}."]
    name = "" if result.metric == "top1" else f" by {result.metric}"
    out = [
        f"{record.model.get('spec')} classifies {result.correct} of {result.n} images correctly{name} "
        f"({100 * result.accuracy:.2f} %, {level_of(record)} interval {interval_text(result.ci)}, error "
        f"{100 * (1 - result.accuracy):.2f} %); mean cross-entropy {result.loss:.4f}."
    ]
    images, points = smallest_detectable(result.n, 1, level_value(record))
    out.append(
        f"Sample size: the interval is ±{50 * (result.ci[1] - result.ci[0]):.2f} points wide; a paired test of "
        f"another model on these {result.n} images cannot call a difference below {points:.2f} points "
        f"({images} images) significant."
    )
    adaptive = adaptive_sentence([result.n], total, record)
    return out + ([adaptive] if adaptive else [])
