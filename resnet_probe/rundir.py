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
import json
import logging
import os
import re
import secrets
import socket
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Protocol

from resnet_probe.errors import OutputError
from resnet_probe.files import atomic_write_text, write_json

if TYPE_CHECKING:
    from resnet_probe.results import Result, RunRecord

DEFAULT_ROOT = Path("probe-reports")
OUTPUT_FILES = ("report.html", "results.json")
JOURNAL = "progress.jsonl"  # finished pieces of an interrupted run, for --resume
RENDERERS = "resnet_probe.renderers"
LOCK = "run.lock"  # held by the run writing into the directory, removed when it ends

log = logging.getLogger(__name__)


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


class RunLock:
    """An exclusive lock on a run directory: ``DIR/run.lock``, created with O_CREAT|O_EXCL, holding the pid.

    A lock whose process is gone (same host, and that pid is not running or was started after
    the lock, or the machine rebooted since) is stale: it is taken over, with a warning on the
    ``resnet_probe`` logger. Taking over happens under a second O_EXCL file, so two runs that
    find the same stale lock cannot both take it.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK
        self.token = secrets.token_hex(8)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, taking over a stale one; a live one is a one-line :class:`OutputError`."""
        for _attempt in range(2):
            if _create_exclusive(self.path, self.holder()):
                return
            held = read_holder(self.path)
            if held is None or not is_stale(held):
                raise self._busy(held)
            self._take_over(held)
        raise self._busy(read_holder(self.path))

    def release(self) -> None:
        """Remove the lock if it is still this run's."""
        held = read_holder(self.path)
        if held is not None and held.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def holder(self) -> dict[str, Any]:
        """What the lock file says about this run."""
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "process_start": _process_start(os.getpid()),
            "boot_id": _boot_id(),
            "token": self.token,
        }

    def _busy(self, held: dict[str, Any] | None) -> OutputError:
        if held is None:
            return OutputError(
                f"--out {self.directory} is locked by {self.path}, which names no process; "
                f"if no run writes there, delete {self.path}"
            )
        return OutputError(
            f"--out {self.directory} is in use by another run (pid {held.get('pid')} on {held.get('host')}, "
            f"started {held.get('started')}); wait for it to end or choose another --out"
        )

    def _take_over(self, stale: dict[str, Any]) -> None:
        guard = self.path.with_name(self.path.name + ".takeover")
        if not _create_exclusive(guard, self.holder()):
            other = read_holder(guard)
            if other is None or not is_stale(other):
                raise self._busy(other)  # another run is taking it over right now
            guard.unlink(missing_ok=True)
            if not _create_exclusive(guard, self.holder()):
                raise self._busy(read_holder(guard))
        try:
            if read_holder(self.path) == stale:  # still the stale one, not a fresh run's
                self.path.unlink(missing_ok=True)
                log.warning(
                    "%s: taking over the stale lock of pid %s (started %s), which is no longer running",
                    self.path, stale.get("pid"), stale.get("started"),
                )
        finally:
            guard.unlink(missing_ok=True)


def _create_exclusive(path: Path, content: dict[str, Any]) -> bool:
    """Create ``path`` holding ``content`` unless it exists; whether this call created it."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as exc:
        raise OutputError(f"cannot lock {path.parent}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(content) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return True


def read_holder(path: Path) -> dict[str, Any] | None:
    """The lock file's record of its run, or None when it is gone, empty or unreadable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("pid"), int) else None


def is_stale(held: dict[str, Any]) -> bool:
    """Whether the run a lock names is certainly gone (on another host nothing is certain)."""
    if held.get("host") != socket.gethostname():
        return False
    boot = _boot_id()
    if boot is not None and held.get("boot_id") not in (None, boot):
        return True  # the machine restarted since
    pid = held["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    except (OverflowError, ValueError):
        return True  # no such pid can exist
    started = held.get("process_start")
    return started is not None and _process_start(pid) not in (None, started)  # the pid was reused


def _process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after the parenthesised name


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def write_run(out_dir: Path, record: RunRecord, result: Result) -> list[Path]:
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


def out_of_range(doc: Any, where: str = "") -> str | None:
    """The first number of a result that cannot be: an accuracy outside [0, 1], or more correct than images.

    Every key named ``accuracy``, ``*_accuracy`` or ``accuracies`` holds fractions, and a
    dict with ``correct`` and ``n`` counts images (``0 <= correct <= n``).
    """
    if isinstance(doc, dict):
        correct, n = doc.get("correct"), doc.get("n")
        if isinstance(correct, int) and isinstance(n, int) and not 0 <= correct <= n:
            return f"{where + '.' if where else ''}correct = {correct} of n = {n}; allowed 0 <= correct <= n"
        for key, value in doc.items():
            at = f"{where}.{key}" if where else str(key)
            if _ACCURACY.fullmatch(str(key)):
                for i, v in enumerate(value if isinstance(value, list) else [value]):
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and not 0 <= v <= 1:
                        return f"{at}{f'[{i}]' if isinstance(value, list) else ''} = {v}; an accuracy lies in [0, 1]"
            found = out_of_range(value, at)
            if found is not None:
                return found
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found = out_of_range(value, f"{where}[{i}]")
            if found is not None:
                return found
    return None


_ACCURACY = re.compile(r"accuracy|\w+_accuracy|accuracies")


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
