"""`resnet-probe analyses` and `resnet-probe run`: the installed analysis plugins."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from resnet_probe.cli import options as o
from resnet_probe.cli.console import err, out, print_reading, run_command
from rich.table import Table

from resnet_probe.errors import ProbeError
from resnet_probe.settings import RunSettings


def analyses() -> None:
    """List installed analyses (name, package, version); broken plugins are named and skipped."""
    from resnet_probe.plugins import discover

    table = Table("name", "package", "version", "description")
    for info in discover():
        if info.analysis is None:
            err.print(f"plugin {info.name!r} from {info.package} failed to load: {info.error}", markup=False)
            continue
        table.add_row(info.name, info.package, info.version, info.analysis.description)
    out.print(table)


def _parse_assignments(assignments: list[str]) -> dict[str, object]:
    parsed: dict[str, object] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ProbeError(f"--set {item!r}: expected KEY=VALUE")
        try:
            parsed[key.replace("-", "_")] = json.loads(value)
        except ValueError:
            parsed[key.replace("-", "_")] = value
    return parsed


@o.with_common()
def run(
    name: Annotated[str, typer.Argument(help="Analysis name, as `resnet-probe analyses` lists it.")],
    settings: RunSettings,
    assignments: Annotated[Optional[list[str]], typer.Option("--set", help="Analysis option KEY=VALUE (JSON values).")] = None,
) -> None:
    """Run any installed analysis (built-in or third-party) with its default options."""
    try:
        record, result = run_command(name, settings, _parse_assignments(assignments or []))
    except TypeError as exc:
        raise ProbeError(f"analysis {name!r} rejected its options: {exc}") from None
    print_reading(record, result)
