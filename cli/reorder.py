"""`resnet-probe reorder`: swap units and measure accuracy against Kendall tau (Veit et al. Fig. 5b)."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Annotated

import typer
from resnet_probe.cli import options as o
from resnet_probe.cli.console import out, print_reading, run_command
from rich.table import Table

from resnet_probe.settings import REORDER_SAMPLES, RunSettings

if TYPE_CHECKING:
    from resnet_probe.analyses.reorder import ReorderResult

Swaps = Annotated[str, typer.Option("--swaps", help="Numbers of random swaps k: A:B (inclusive) or K.")]
Samples = Annotated[int, typer.Option("--samples", help="Random orders per k.")]


@o.with_common()
def reorder(settings: RunSettings, swaps: Swaps = "1:20", samples: Samples = REORDER_SAMPLES) -> None:
    """Accuracy of the network with its units reordered by k random swaps, against Kendall tau.

    Example: resnet-probe reorder --model resnet110 --dataset cifar10 --swaps 1:20 --samples 10
    """
    from resnet_probe.analyses.reorder import ReorderResult

    record, result = run_command("reorder", settings, {"swaps": swaps, "samples": samples})
    assert isinstance(result, ReorderResult)
    out.print(summary_table(result, str(record.model.get("spec", settings.model))))
    print_reading(record, result)


def summary_table(result: ReorderResult, spec: str) -> Table:
    """Mean Kendall tau and accuracy per number of swaps."""
    base = result.baseline.accuracy
    table = Table("swaps k", "orders", "mean τ", "mean accuracy", "cost (points)", title=f"reorder {spec}")
    table.add_row("0", "1", "1.000", f"{100 * base:.2f} %", "")
    groups: dict[int, list[tuple[float, float]]] = {}
    for c in result.configs:
        groups.setdefault(c.swaps, []).append((c.kendall_tau, c.accuracy))
    for k, rows in sorted(groups.items()):
        acc = statistics.fmean(a for _, a in rows)
        table.add_row(str(k), str(len(rows)), f"{statistics.fmean(t for t, _ in rows):.3f}",
                      f"{100 * acc:.2f} %", f"{100 * (base - acc):+.2f}")
    return table
