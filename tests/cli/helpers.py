"""Run the CLI in-process the way the console script does, capturing exit code and output."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from resnet_probe.cli.app import main


@dataclass
class CliRun:
    """Exit code and captured streams of one CLI call."""

    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> CliRun:
    """Call ``main(args)``; SystemExit carries the exit code."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return CliRun(code, captured.out, captured.err)
