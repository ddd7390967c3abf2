"""`resnet-probe evaluate` (alias `eval`): accuracy of the unchanged model."""

from __future__ import annotations

from resnet_probe.cli import options as o
from resnet_probe.cli.console import out, run_command

from resnet_probe.settings import RunSettings


@o.with_common(omit=("resume",))
def evaluate(settings: RunSettings, metric: o.Metric = "auto") -> None:
    """Top-1 accuracy (or --metric) of a model on a data set; writes results.json and report.html."""
    from resnet_probe.analyses.evaluate import EvaluateResult

    record, result = run_command("evaluate", settings, {"metric": metric})
    assert isinstance(result, EvaluateResult)
    if result.metric_kind != "hit":
        out.print(result.mean_text(f"{100 * settings.confidence:g} %"))
        return
    out.print(
        f"{'' if result.metric == 'top1' else result.metric + ' '}accuracy {100 * result.accuracy:.2f} % "
        f"({result.correct}/{result.n} correct; "
        f"{100 * settings.confidence:g} % interval [{100 * result.ci[0]:.2f}, {100 * result.ci[1]:.2f}] %), "
        f"loss {result.loss:.4f}"
    )
    from resnet_probe.reports.content import adaptive_sentence

    adaptive = adaptive_sentence([result.n], int((record.data or {}).get("n", result.n)), record)
    if adaptive:
        out.print(adaptive)
