"""`resnet-probe report results.json`: re-render a report without recomputing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from resnet_probe.cli import options as o
from resnet_probe.cli.console import out

from resnet_probe.errors import OutputError


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
    from resnet_probe.plugins import get_analysis
    from resnet_probe.results import RunRecord, read_result

    target = html or results.with_name("report.html")
    if target.is_dir():
        raise OutputError(f"--html {target} is a directory; give the file to write, e.g. {target / 'report.html'}")
    if target.exists() and not target.is_file():
        raise OutputError(f"--html {target} exists and is not a regular file")
    record = RunRecord.from_dict(read_json(results), where=str(results))
    result = read_result(get_analysis(record.analysis).result_type, record, where=str(results))
    try:
        page = render_report(record, result, title or record.title)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        # The file passed its checks but holds values no report can show: say which, not a traceback.
        raise OutputError(f"{results}: cannot render its report ({type(exc).__name__}: {exc})") from None
    atomic_write_text(target, page)
    out.print(f"wrote {target}")
