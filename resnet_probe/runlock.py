"""The run lock: one run per run directory (``DIR/run.lock``, created atomically, taken over only when stale)."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import secrets
import socket
from pathlib import Path
from typing import Any

from resnet_probe.errors import OutputError

LOCK = "run.lock"  # held by the run writing into the directory, removed when it ends

log = logging.getLogger("resnet_probe.rundir")


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
