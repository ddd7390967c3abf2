"""`resnet-probe report results.json`: re-render a report without recomputing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from resnet_probe.cli import options as o
from resnet_probe.cli.console import out


def report(
    results: Annotated[Path, typer.Argument(help="A results.json written by any command.")],
    html: Annotated[Optional[Path], typer.Option("--html", help="Where to write (default: report.html beside it).")] = None,
    title: o.Title = None,
) -> None:
    """Re-render report.html from results.json."""
    from resnet_probe.reports import write_report

    from resnet_probe.files import read_json
    from resnet_probe.plugins import get_analysis
    from resnet_probe.results import RunRecord

    record = RunRecord.from_dict(read_json(results))
    result = get_analysis(record.analysis).result_type.from_dict(record.result)
    target = html or results.with_name("report.html")
    write_report(target, record, result, title or record.title)
    out.print(f"wrote {target}")
