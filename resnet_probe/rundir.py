"""The run directory: where a run writes, checked before any work, never over an earlier report.

A run directory holds ``results.json`` (the numbers), ``results.csv`` (the result's main table,
the rows of ``to_frame()``), ``report.html`` (self-contained) and ``figures/`` (every figure
of the report as SVG and PDF). The HTML side comes from the renderer registered under the
entry-point group ``resnet_probe.renderers`` (the built-in one is ``resnet_probe.reports``),
so the library writes reports without importing the layer above it.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from resnet_probe.errors import OutputError
from resnet_probe.files import atomic_write_text, write_json

if TYPE_CHECKING:
    from resnet_probe.results import Result, RunRecord

DEFAULT_ROOT = Path("probe-reports")
OUTPUT_FILES = ("report.html", "results.json")
JOURNAL = "progress.jsonl"  # finished pieces of an interrupted run, for --resume
RENDERERS = "resnet_probe.renderers"


class Renderer(Protocol):
    """What turns a result into its report: the HTML page, the figure files, inline HTML."""

    def write(self, out_dir: Path, record: RunRecord, result: Result) -> list[Path]:
        """Write report.html and figures/ into ``out_dir``; return the paths written."""

    def inline(self, record: RunRecord, result: Result) -> str:
        """The report's figures and reading as an HTML fragment (for Jupyter)."""


@lru_cache(maxsize=1)
def renderer() -> Renderer:
    """The installed report renderer (entry point ``resnet_probe.renderers: html``)."""
    for ep in metadata.entry_points(group=RENDERERS):
        if ep.name == "html":
            found: Renderer = ep.load()()
            return found
    raise OutputError(f"no report renderer installed (entry point group {RENDERERS!r}); reinstall resnet-probe")


def run_directory(out: Path | None, analysis: str, model: str, force: bool, resume: bool = False) -> Path:
    """The run directory, checked before any work is done (created when results are written).

    With ``resume`` it must be given and may hold the progress.jsonl of an interrupted run;
    without, such a directory is refused unless ``force`` (starting over drops that progress).
    """
    if resume and out is None:
        raise OutputError("--resume needs --out DIR: the run directory of the interrupted run")
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", model).strip("-")
        base = DEFAULT_ROOT / f"{analysis}-{safe}-{stamp}"
        out, n = base, 1
        while out.exists():
            n += 1
            out = base.with_name(f"{base.name}-{n}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out}: exists and is not a directory")
    existing = [name for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not force:
        raise OutputError(f"--out {out} already holds {existing[0]}; pass --force to overwrite it")
    if (out / JOURNAL).exists() and not (resume or force):
        raise OutputError(
            f"--out {out} holds {JOURNAL} of an interrupted run; pass --resume to continue it or --force to start over"
        )
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"--out {out}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out}: {probe} is not writable")
    # Created only when the results are written, so a failed run leaves nothing behind.
    return out


def write_run(out_dir: Path, record: RunRecord, result: Result) -> list[Path]:
    """results.json, results.csv, report.html and figures/, each file written whole or not at all."""
    written = [out_dir / "results.json", out_dir / "results.csv"]
    write_json(written[0], record.to_dict())
    atomic_write_text(written[1], result.to_frame().to_csv(index=False))
    written += renderer().write(out_dir, record, result)
    return written


def jsonable(options: dict[str, Any]) -> dict[str, Any]:
    """Options as results.json stores them (tuples become lists)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}
