"""The typer app and ``main()``: known errors become one red line and exit code 2."""

from __future__ import annotations

import sys
from typing import Sequence

import click
import typer
from rich.text import Text

from resnet_probe.errors import ProbeError

from . import evaluate, models, plugins, report
from . import gradients as gradients_cmd
from . import lesion as lesion_cmd
from . import paths as paths_cmd
from . import reorder as reorder_cmd
from . import std_report as std_report_cmd
from . import train as train_cmd
from .demo import demo
from .console import err

app = typer.Typer(
    name="resnet-probe",
    help="Open up trained residual networks and measure how they really work.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("models")(models.models)
app.command("eval")(evaluate.evaluate)
app.command("analyses")(plugins.analyses)
app.command("run")(plugins.run)
app.command("report")(report.report)
app.command("paths")(paths_cmd.paths)
app.command("gradients")(gradients_cmd.gradients)
app.command("lesion")(lesion_cmd.lesion)
app.command("std-report")(std_report_cmd.std_report)
app.command("train")(train_cmd.train)
app.command("train-report")(train_cmd.train_report)
app.command("reorder")(reorder_cmd.reorder)
app.command("demo")(demo)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        code = app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except ProbeError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        err.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        err.print(Text("interrupted", style="bold red"))
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
