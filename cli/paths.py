"""`resnet-probe paths`: the unraveled view of a model, with no data and no weights needed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from resnet_probe.cli import options as o
from resnet_probe.cli.console import out, print_reading, run_command

from resnet_probe.settings import RunSettings

GraphML = Annotated[
    Optional[Path], typer.Option("--graphml", help="Also write the path graph as GraphML (networkx.read_graphml).")
]


def paths(
    model: o.Model,
    graphml: GraphML = None,
    checkpoint: o.Checkpoint = None,
    out_dir: o.Out = None,
    force: o.Force = False,
    title: o.Title = None,
) -> None:
    """Count the paths of the unraveled view by length (Veit et al. Fig. 6a).

    Example: resnet-probe paths --model resnet56 --graphml resnet56.graphml
    """
    settings = RunSettings(model, checkpoint, device="cpu", out=out_dir, force=force, title=title)
    options = {"graphml": str(graphml)} if graphml is not None else {}
    record, result = run_command("paths", settings, options)
    print_reading(record, result)
    if graphml is not None:
        out.print(f"wrote {graphml}")
