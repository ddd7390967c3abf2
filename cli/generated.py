"""The command of an analysis that has no hand-written one (a plugin's): made from its declared options.

``resnet-probe NAME --help`` lists the shared options and the analysis' own ones
(``Analysis.options``: name, type, default, bounds, help); the command runs it into its run
directory (``--resume`` where the analysis journals) and prints its reading, like the built-ins.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Callable, Optional

import typer
from resnet_probe.cli import options as o
from resnet_probe.cli.console import print_reading, run_command

from resnet_probe.settings import RunSettings


def command_for(analysis: Any) -> Callable[..., None]:
    """A typer command function for ``analysis`` (an :class:`~resnet_probe.analyses.base.Analysis` class)."""
    declared = list(analysis.options)

    def command(settings: RunSettings, **given: Any) -> None:
        record, result = run_command(analysis.name, settings, given)
        print_reading(record, result)

    params = [inspect.Parameter("settings", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=RunSettings)]
    for opt in declared:
        kind = opt.kind if opt.default is not None else Optional[opt.kind]
        info = typer.Option(opt.flag, help=opt.help or None, min=opt.low, max=opt.high)
        params.append(inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, default=opt.default,
                                        annotation=Annotated[kind, info]))
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = analysis.name.replace("-", "_")
    command.__doc__ = (analysis.description or f"The {analysis.name} analysis.").rstrip(".") + (
        f" (plugin analysis; its options: {', '.join(opt.flag for opt in declared) or 'none'})."
    )
    omit = () if analysis.resumable else ("resume",)
    return o.with_common(omit=omit)(command)
