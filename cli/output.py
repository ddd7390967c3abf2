"""Where a run writes: its own directory, never over an earlier report unless --force."""

from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path

from resnet_probe.errors import OutputError

DEFAULT_ROOT = Path("probe-reports")
OUTPUT_FILES = ("report.html", "results.json")
JOURNAL = "progress.jsonl"  # finished pieces of an interrupted run, for --resume


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
