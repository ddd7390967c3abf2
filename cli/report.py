"""`resnet-probe report results.json`: re-render a report without recomputing."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from resnet_probe.cli import options as o
from resnet_probe.cli.console import out

from resnet_probe.errors import OutputError

if TYPE_CHECKING:
    from resnet_probe.results import Result


def report(
    results: Annotated[Path, typer.Argument(help="A results.json written by any command.")],
    html: Annotated[
        Optional[Path], typer.Option("--html", help="File to write (default: report.html beside it); not a directory.")
    ] = None,
    title: o.Title = None,
) -> None:
    """Re-render report.html from results.json (checked first: types, finite numbers, accuracies in [0, 1])."""
    from resnet_probe.reports.render import render_report

    from resnet_probe.files import atomic_write_text, read_json
    from resnet_probe.results import RunRecord, read_result

    target = html or results.with_name("report.html")
    if target.is_dir():
        raise OutputError(f"--html {target} is a directory; give the file to write, e.g. {target / 'report.html'}")
    if target.exists() and not target.is_file():
        raise OutputError(f"--html {target} exists and is not a regular file")
    record = RunRecord.from_dict(read_json(results), where=str(results))
    result = read_result(_result_type(record.analysis), record, where=str(results))
    try:
        page = render_report(record, result, title or record.title)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        # The file passed its checks but holds values no report can show: say which, not a traceback.
        raise OutputError(f"{results}: cannot render its report ({type(exc).__name__}: {exc})") from None
    atomic_write_text(target, page)
    out.print(f"wrote {target}")


def _result_type(analysis: str) -> type[Result]:
    """The result class of an analysis plugin, or of an experiment (a grid of runs, not a plugin)."""
    from resnet_probe.plugins import get_analysis

    if analysis == "experiment":
        from resnet_probe.experiments.result import ExperimentResult

        return ExperimentResult
    return get_analysis(analysis).result_type
