"""The run directory: where a run writes, checked before any work, never over an earlier report.

A run directory holds ``results.json`` (the numbers), ``results.csv`` (the result's main table,
the rows of ``to_frame()``), ``report.html`` (self-contained) and ``figures/`` (every figure
of the report as SVG and PDF); while a run writes into it, also ``run.lock`` (its pid) and,
for resumable analyses, ``progress.jsonl``. The HTML side comes from the renderer registered under the
entry-point group ``resnet_probe.renderers`` (the built-in one is ``resnet_probe.reports``),
so the library writes reports without importing the layer above it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import re
from pathlib import Path
from typing import Any, Iterator

from resnet_probe.errors import OutputError
from resnet_probe.files import atomic_write_text, write_json
from resnet_probe.renderers import Record, ResultData, renderer
from resnet_probe.result_checks import out_of_range
from resnet_probe.runlock import RunLock

DEFAULT_ROOT = Path("probe-reports")
OUTPUT_FILES = ("report.html", "results.json")
JOURNAL = "progress.jsonl"  # finished pieces of an interrupted run, for --resume

def run_directory(out: Path | None, analysis: str, model: str, force: bool, resume: bool = False) -> Path:
    """The run directory, checked before any work is done (created when results are written).

    With ``resume`` it must be given and may hold the progress.jsonl of an interrupted run;
    without, such a directory is refused unless ``force`` (starting over drops that progress).
    :func:`claim_run_directory` also creates and locks it for the whole run.
    """
    out = _location(out, analysis, model, resume)
    _check_contents(out, force, resume)
    return out


@contextlib.contextmanager
def claim_run_directory(
    out: Path | None, analysis: str, model: str, force: bool, resume: bool = False, *, lock: bool = True
) -> Iterator[Path]:
    """The run directory, checked and held under an exclusive :class:`RunLock` for the whole block.

    The lock is taken before the directory's contents are checked, so a second run into the same
    ``--out`` is refused at once, whatever the first has written so far. On the way out (also on
    errors and interrupts) the lock is released and the folders this call created are removed
    again if nothing was written into them. ``lock=False`` (the other ranks of a torchrun job)
    only checks.
    """
    out = _location(out, analysis, model, resume)
    if not lock:
        _check_contents(out, force, resume)
        yield out
        return
    created = _make_dirs(out)
    try:
        with RunLock(out):
            _check_contents(out, force, resume)
            yield out
    finally:
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):  # not empty: the run wrote into it
                folder.rmdir()


def _location(out: Path | None, analysis: str, model: str, resume: bool) -> Path:
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
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"--out {out}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"--out {out}: {probe} is not writable")
    return out


def _check_contents(out: Path, force: bool, resume: bool) -> None:
    existing = [name for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not force:
        raise OutputError(f"--out {out} already holds {existing[0]}; pass --force to overwrite it")
    if (out / JOURNAL).exists() and not (resume or force):
        raise OutputError(
            f"--out {out} holds {JOURNAL} of an interrupted run; pass --resume to continue it or --force to start over"
        )


def _make_dirs(out: Path) -> list[Path]:
    """Create ``out`` and its missing parents; the ones created, deepest first."""
    missing = []
    folder = out
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue  # another run made it meanwhile: not ours to remove
        except OSError as exc:
            raise OutputError(f"--out {out}: cannot create {folder}: {exc.strerror or exc}") from None
    return missing


def write_run(out_dir: Path, record: Record, result: ResultData) -> list[Path]:
    """results.json, results.csv, report.html and figures/, each file written whole or not at all.

    A result with an accuracy outside [0, 1] or more correct images than images is a bug, and
    nothing of it is written.
    """
    doc = record.to_dict()
    problem = out_of_range(doc["result"])
    if problem is not None:
        raise OutputError(
            f"refusing to save {record.analysis} results into {out_dir}: result.{problem}; "
            "this is a bug in resnet-probe or in the analysis that computed it, please report it"
        )
    written = [out_dir / "results.json", out_dir / "results.csv"]
    write_json(written[0], doc)
    atomic_write_text(written[1], result.to_frame().to_csv(index=False))
    written += renderer().write(out_dir, record, result)
    return written


def jsonable(options: dict[str, Any]) -> dict[str, Any]:
    """Options as results.json stores them (tuples become lists)."""
    return {k: _jsonable(v) for k, v in options.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if callable(value) or hasattr(value, "fn"):  # a metric callable (or Metric) is stored by its name
        name = getattr(value, "name", None) or getattr(value, "__name__", type(value).__name__)
        return f"callable {name}"
    return value
