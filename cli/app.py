"""The typer app and ``main()``: known errors become one red line and exit code 2."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Callable, Sequence

import click
import typer
from resnet_probe.cli import evaluate, gradients, lesion, models, paths, plugins, reorder, report, response_std, train
from resnet_probe.cli.console import err
from resnet_probe.cli.demo import demo
from resnet_probe.cli.experiment import experiment
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from resnet_probe.bounds import describe
from resnet_probe.errors import ProbeError


class _PlainFlags:
    """On/off flags show no ``<bool>`` value placeholder in --help: they take no value."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:  # typer vendors click: its options are not click.Option instances
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class ProbeCommand(_PlainFlags, TyperCommand):
    """A command of the app."""


class ProbeGroup(_PlainFlags, TyperGroup):
    """The app itself; an installed analysis without a command of its own gets one made from its options."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name.startswith("-"):
            return found
        return _plugin_command(cmd_name)


def _plugin_command(name: str) -> Any:
    """The generated command of the plugin analysis ``name``, or None (loads only that plugin, on use)."""
    from importlib import metadata

    from resnet_probe.plugins import GROUP

    if not any(ep.name == name for ep in metadata.entry_points(group=GROUP)):
        return None
    from resnet_probe.cli.generated import command_for

    from resnet_probe.plugins import get_analysis

    single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    single.command(name, cls=ProbeCommand)(command_for(get_analysis(name)))
    return typer.main.get_command(single)


app = typer.Typer(
    cls=ProbeGroup,
    name="resnet-probe",
    help="Open up trained residual networks and measure how they really work.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
COMMANDS: dict[str, Callable[..., None]] = {
    "models": models.models,
    "evaluate": evaluate.evaluate,
    "lesion": lesion.lesion,
    "reorder": reorder.reorder,
    "paths": paths.paths,
    "gradients": gradients.gradients,
    "response-std": response_std.response_std,
    "train": train.train,
    "train-curves": train.train_curves,
    "experiment": experiment,
    "demo": demo,
    "analyses": plugins.analyses,
    "run": plugins.run,
    "report": report.report,
}
for name, command in COMMANDS.items():
    app.command(name, cls=ProbeCommand)(command)
# The short names the commands had before the analyses got one name each.
for alias, name in (("eval", "evaluate"), ("std-report", "response-std"), ("train-report", "train-curves")):
    app.command(alias, cls=ProbeCommand, help=f"Alias of `{name}`.")(COMMANDS[name])


# typer >= 0.2x vendors click: its usage errors derive from typer.TyperException, not click's.
_USAGE_ERRORS = tuple({click.ClickException, getattr(typer, "TyperException", click.ClickException)})
_ABORTS = tuple({click.Abort, typer.Abort, KeyboardInterrupt})
# typer's own words when a number misses its option's min/max
_OUT_OF_RANGE = re.compile(r"(greater|less) than or equal to")


class _StderrLines(logging.Handler):
    """The library's warnings (a stale run lock taken over, ...) as plain lines on stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        err.print(Text(record.getMessage()), soft_wrap=True)


def _show_library_warnings() -> None:
    library = logging.getLogger("resnet_probe")
    if not any(isinstance(h, _StderrLines) for h in library.handlers):
        library.addHandler(_StderrLines(logging.WARNING))


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    args = list(argv) if argv is not None else sys.argv[1:]
    _show_library_warnings()
    try:
        code = app(args=args, prog_name="resnet-probe", standalone_mode=False)
    except ProbeError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        _error(message)
        sys.exit(2)
    except _USAGE_ERRORS as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # the help text, as for `resnet-probe --help`
            sys.exit(0)
        _error(_usage_line(exc, args))
        sys.exit(getattr(exc, "exit_code", 2))
    except _ABORTS:
        code = 130
    if code == 130:  # typer turns Ctrl-C inside a command into this return code
        err.print(Text("interrupted", style="bold red"))
    sys.exit(code if isinstance(code, int) else 0)


def _error(message: str) -> None:
    err.print(Text("error: ", style="bold red") + Text(message), soft_wrap=True)


def _usage_line(exc: Exception, args: list[str]) -> str:
    """A click usage error as one line: the message, the value given (and the range it missed), where help is."""
    message = " ".join(str(exc.format_message()).split()).rstrip(".")  # type: ignore[attr-defined]
    param = getattr(exc, "param", None)
    opts = getattr(param, "opts", None) or []
    given = next((v for v in (_value_after(args, o) for o in opts) if v is not None), None)
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if given is not None and (low, high) != (None, None) and _OUT_OF_RANGE.search(message):
        message = f"Invalid value for {opts[0]!r}: {given} is outside {describe(low, high)}"
    elif given is not None and repr(given) not in message:
        message += f" (got {given!r})"
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        message += f"; see `{ctx.command_path} --help`"
    return message


def _value_after(args: list[str], opt: str) -> str | None:
    """The value given to ``opt``; the last one wins, as in click."""
    value = None
    for i, arg in enumerate(args):
        if arg == opt and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(opt + "="):
            value = arg[len(opt) + 1 :]
    return value


if __name__ == "__main__":
    main()
