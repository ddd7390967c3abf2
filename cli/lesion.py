"""`resnet-probe lesion`: delete residual units and measure accuracy (Veit et al. Fig. 3, 5a)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer
from resnet_probe.cli import options as o
from resnet_probe.cli.console import out, print_reading, run_command
from rich.table import Table

from resnet_probe.settings import LESION_SAMPLES, RunSettings

if TYPE_CHECKING:
    from resnet_probe.analyses.lesion import LesionResult

SHOWN = 10  # the costliest single deletions printed; the report has them all

Delete = Annotated[
    Optional[str],
    typer.Option(
        "--delete", help="Delete these units together: indices or names, e.g. 3,7,layer2.0 (default: each alone)."
    ),
]
RandomK = Annotated[
    Optional[str], typer.Option("--random-k", help="Also delete random sets of k units for k in A:B (Veit Fig. 5a).")
]
Samples = Annotated[int, typer.Option("--samples", help="Random sets per k.")]
Compare = Annotated[
    Optional[list[str]],
    typer.Option("--compare", help="Run the same study on SPEC[=CHECKPOINT] and overlay it (repeatable)."),
]


@o.with_common()
def lesion(
    settings: RunSettings,
    delete: Delete = None,
    random_k: RandomK = None,
    samples: Samples = LESION_SAMPLES,
    compare: Compare = None,
    metric: o.Metric = "auto",
) -> None:
    """Accuracy after deleting residual units: each alone, a given set, or random k-sets.

    Example: resnet-probe lesion --model resnet110 --dataset cifar10 --random-k 1:20 --samples 20
    """
    options = {"delete": delete, "random_k": random_k, "samples": samples, "metric": metric}
    from resnet_probe.analyses.lesion import LesionResult

    record, result = run_command("lesion", settings, options, compare=compare or ())
    assert isinstance(result, LesionResult)
    out.print(summary_table(result, str(record.model.get("spec", settings.model))))
    print_reading(record, result)


def summary_table(result: LesionResult, spec: str) -> Table:
    """Baseline, the costliest deletions (or the deleted set) and the random-k means."""
    base = result.baseline.accuracy
    table = Table(title=f"lesion {spec}")
    for column in ("deleted", "units", "accuracy [interval] %", "cost", "sig."):
        table.add_column(column, no_wrap=column == "units")
    table.add_row("none", "", _acc(base, result.baseline.ci), "", "")
    configs = sorted(result.configs, key=lambda c: c.accuracy)[:SHOWN]
    for c in configs:
        names = ", ".join(
            n + (" (downsampling)" if result.units[i].downsampling else "")
            for i, n in zip(c.deleted, c.names, strict=True)
        )
        table.add_row(", ".join(map(str, c.deleted)), names, _acc(c.accuracy, c.ci),
                      f"{100 * (base - c.accuracy):+.2f}", "yes" if c.significant else "no")
    if len(result.configs) > SHOWN:
        table.add_row("…", f"{len(result.configs) - SHOWN} cheaper deletions in report.html", "", "", "")
    for r in result.random_k:
        table.add_row(f"k={r.k}", f"{r.samples} random sets (mean)", _acc(r.mean_accuracy, r.ci),
                      f"{100 * (base - r.mean_accuracy):+.2f}", f"{r.significant}/{r.samples}")
    return table


def _acc(accuracy: float, ci: tuple[float, float]) -> str:
    return f"{100 * accuracy:.2f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"
