"""Append-only JSONL progress files, so an interrupted long run resumes where it stopped.

Each line is one finished piece of work ``{"key": ..., "value": ...}``, flushed and fsynced
when written. A run killed mid-line leaves a torn last line, which is ignored on reading.
The first line records what the run is (its parameters); resuming a different run from the
same journal is refused.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from resnet_probe.errors import OutputError

# Tests only: hold the run after this many journaled items (and say so in PATH.paused), so that an
# interrupt sent then lands mid-run for certain instead of racing a run that may already be done.
PAUSE_ENV = "RESNET_PROBE_PAUSE_AFTER_ITEMS"
PAUSE_S = 120.0


class Journal:
    """Finished work items of one run, keyed by a JSON-able key."""

    def __init__(self, path: Path, identity: dict[str, Any], resume: bool) -> None:
        self.path = Path(path)
        self.identity = json.loads(json.dumps(identity))
        self.done: dict[str, Any] = {}
        # The file (and its folder) appear with the first finished item: a run that fails
        # before finishing anything leaves nothing behind.
        self._started = bool(resume and self.path.exists())
        if self._started:
            self._read()

    def _read(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        try:
            header = json.loads(lines[0])["identity"] if lines else None
        except (ValueError, KeyError, TypeError):
            header = None
        if header != self.identity:
            raise OutputError(
                f"--resume: {self.path} belongs to a different run (other model, data or options); "
                "rerun with --force instead of --resume to start over"
            )
        for line in lines[1:]:
            try:
                item = json.loads(line)
            except ValueError:
                continue  # the torn line of a killed run
            self.done[self._key(item["key"])] = item["value"]

    @staticmethod
    def _key(key: Any) -> str:
        return json.dumps(key, sort_keys=True)

    def has(self, key: Any) -> bool:
        """Whether ``key`` was finished by an earlier (or this) run."""
        return self._key(key) in self.done

    def get(self, key: Any) -> Any:
        """The value recorded for ``key``."""
        return self.done[self._key(key)]

    def add(self, key: Any, value: Any) -> None:
        """Record a finished item durably."""
        if not self._started:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", encoding="utf-8") as fh:
                fh.write(json.dumps({"identity": self.identity}) + "\n")
            self._started = True
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": key, "value": value}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.done[self._key(key)] = value
        pause = os.environ.get(PAUSE_ENV)
        if pause and len(self.done) == int(pause):
            self.path.with_name(self.path.name + ".paused").touch()
            time.sleep(PAUSE_S)  # the signal the test sends ends this

    def close(self, keep: bool = False) -> None:
        """Remove the journal once the run's results are written (unless ``keep``)."""
        if not keep:
            self.path.unlink(missing_ok=True)
            self.path.with_name(self.path.name + ".paused").unlink(missing_ok=True)
