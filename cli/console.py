"""Running an analysis command: its progress bar, its run directory, its reading on stdout."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from resnet_probe.cli.streams import err, out
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from resnet_probe.settings import RunSettings

if TYPE_CHECKING:
    from resnet_probe.results import Result, RunRecord

__all__ = ["err", "out", "print_reading", "rich_progress", "run_command"]


@contextlib.contextmanager
def rich_progress(description: str, total: int) -> Iterator[callable]:  # type: ignore[valid-type]
    """A rich progress bar on stderr; yields ``advance(n)``."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def run_command(
    name: str, settings: RunSettings, options: dict[str, Any], *, compare: Sequence[str] = ()
) -> tuple[RunRecord, Result]:
    """Run the analysis called ``name`` into its run directory with a progress bar; say where it went."""
    from resnet_probe.cli import preload
    from resnet_probe.cli.training import train_missing

    from resnet_probe import distributed
    from resnet_probe.plugins import get_analysis
    from resnet_probe.rundir import claim_run_directory
    from resnet_probe.runner import run_analysis

    analysis = get_analysis(name)()
    if analysis.needs_weights:

        def check_out() -> None:  # the checks the run makes (lock, then contents), before a training
            with claim_run_directory(settings.out, analysis.name, settings.model, settings.force, settings.resume):
                pass

        train_missing(settings, compare, before=check_out)
    preload.start()
    out_dir, record, result = run_analysis(analysis, settings, options, compare=compare, progress=rich_progress)
    if distributed.is_main():
        from resnet_probe.reports import content

        first = content.provenance_sentence(record)
        if first:
            out.print(first)
        batch = record.extra.get("batch_size", {})
        if batch.get("from") == "probe":  # it cost time the progress bar did not show
            rates = ", ".join(f"{b}: {v:,.0f}" for b, v in batch.get("images_per_s", {}).items())
            out.print(f"batch size {batch['size']}: the fastest of a timed probe (images/s {rates}); cached for reruns")
        out.print(f"wrote {out_dir / 'report.html'}, results.json, results.csv and figures/")
    else:
        out.quiet = True  # only rank 0 prints results
    return record, result


def print_reading(record: RunRecord, result: Result) -> None:
    """Print the report's plain-language reading to stdout."""
    from resnet_probe.reports import content

    for sentence in content.full_reading(result, record, with_provenance=False):
        out.print(sentence)
