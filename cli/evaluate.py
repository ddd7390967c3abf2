"""`resnet-probe eval`: accuracy of the unchanged model."""

from __future__ import annotations

from resnet_probe.analyses.accuracy import EvalAnalysis, EvalResult

from . import options as o
from .console import out
from .pipeline import run_analysis


@o.with_common(omit=("resume",))
def evaluate(common: o.Common) -> None:
    """Top-1 accuracy of a model on a data set; writes results.json and report.html."""
    _, _, result = run_analysis(EvalAnalysis(), common, {})
    assert isinstance(result, EvalResult)
    out.print(
        f"accuracy {100 * result.accuracy:.2f} % ({result.correct}/{result.n} correct), "
        f"loss {result.loss:.4f}"
    )
