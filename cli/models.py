"""`resnet-probe models`: the zoo, with family, unit count and parameters."""

from __future__ import annotations

import json
from typing import Annotated, Any, Optional

import typer
from resnet_probe.cli.console import out
from rich.table import Table

from resnet_probe.models.registry import get_entry, list_models


def models(
    pattern: Annotated[Optional[str], typer.Argument(help="fnmatch filter, e.g. 'resnet*' or '*_b'.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the CIFAR zoo (tv:resnet18|34|50|101|152 and timm:resnet* are available too)."""
    rows: list[dict[str, Any]] = []
    for name in list_models(pattern or "*"):
        entry = get_entry(name)
        rows.append({"name": name, "family": entry.family, "units": entry.units, "params": entry.params})
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("name", "family", "units", "params")
    for r in rows:
        table.add_row(r["name"], r["family"], str(r["units"]), f"{r['params'] / 1e6:.2f}M")
    out.print(table)
    out.print("Also: tv:resnet18|34|50|101|152 (torchvision) and timm:resnet* (timm), e.g. timm:resnet50.a1_in1k")
