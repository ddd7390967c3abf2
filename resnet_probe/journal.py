"""Append-only JSONL progress files, so an interrupted long run resumes where it stopped.

Each line is one finished piece of work ``{"key": ..., "value": ...}``, flushed and fsynced
when written. A run killed mid-line leaves a torn last line (no newline yet), which is
dropped on reading and cut off before the next append. The first line records what the run
is (its parameters); resuming a different run from the same journal is refused.

Every other line is checked against the schema of the run's items (the analysis's ``journal_item``):
a line that is not UTF-8 JSON, has the wrong types, a non-finite number, more correct
images than images, or another value for a key already read refuses the whole journal,
naming its line; a refused journal is never appended to.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from resnet_probe.errors import OutputError
from resnet_probe.files import loads_finite

# Tests only: hold the run after this many journaled items (and say so in PATH.paused) until the
# test removes PATH.paused, so that an interrupt or a second run lands mid-run for certain instead
# of racing a run that may already be done.
PAUSE_ENV = "RESNET_PROBE_PAUSE_AFTER_ITEMS"
PAUSE_S = 120.0
_PAUSE_POLL_S = 0.02


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class ScoreValue(_Strict):
    """A scored configuration (lesion, reorder): ``correct`` of ``n`` images right, summed loss, hits."""

    correct: int = Field(ge=0)
    n: int = Field(ge=1)
    loss_sum: float = Field(ge=0)
    hits: str | None = None
    stopped: bool = False
    kind: Literal["hit", "loss", "mean"] = "hit"
    values: str | None = None
    value_sum: float = 0.0

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> ScoreValue:
        from resnet_probe.stats import unpack_bits, unpack_floats

        if self.kind in ("loss", "mean"):
            if self.values is None:
                raise ValueError(f"a {self.kind} score needs its per-example values")
            unpack_floats(self.values, self.n)  # ValueError on a bad packing or a non-finite value

        if self.correct > self.n:
            raise ValueError(f"correct {self.correct} exceeds n {self.n}; allowed 0 <= correct <= n")
        images = (info.context or {}).get("images")
        if images is not None and (self.n > images or (self.n < images and not self.stopped)):
            raise ValueError(f"n {self.n} does not match the run's {images} images")
        if self.hits is not None:
            right = int(unpack_bits(self.hits, self.n).sum())  # ValueError on a bad packing
            if right != self.correct:
                raise ValueError(f"hits mark {right} images correct, not correct {self.correct}")
        return self


class ScoreItem(_Strict):
    """One journaled configuration of :func:`resnet_probe.analyses.resumable.score_resumable`."""

    key: Any
    value: ScoreValue


Norm = Annotated[float, Field(ge=0)]


class NormsItem(_Strict):
    """One journaled batch of path-gradient norms (gradients), under its running batch index."""

    key: int = Field(ge=0)
    value: list[Norm] = Field(min_length=1)


class AnyItem(_Strict):
    """An item of an analysis without a schema here (a plugin's): any JSON, finite numbers."""

    key: Any
    value: Any


def item_schema(declared: type[BaseModel] | None) -> type[BaseModel]:
    """The schema an analysis declares for its journal items (``Analysis.journal_item``), else :class:`AnyItem`."""
    return declared if declared is not None else AnyItem


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(part) for part in err["loc"])
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def recorded_batch_size(path: Path) -> int | None:
    """The batch size a journaled run used (its header), so ``--resume`` batches as it did; None if unknown."""
    try:
        with Path(path).open("rb") as fh:
            header = loads_finite(fh.readline().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None  # Journal itself says what is wrong with the file
    size = header.get("identity", {}).get("batch_size") if isinstance(header, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 1 else None


class Journal:
    """Finished work items of one run, keyed by a JSON-able key.

    ``schema`` checks every item read and written (default: :class:`AnyItem`); ``images``, when
    given, is the number of images every unstopped score must count.
    """

    def __init__(
        self,
        path: Path,
        identity: dict[str, Any],
        resume: bool,
        schema: type[BaseModel] = AnyItem,
        images: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.identity = json.loads(json.dumps(identity))
        self.schema = schema
        self.context = {"images": images}
        self.done: dict[str, Any] = {}
        self._keep = 0  # bytes of whole lines: a torn tail beyond them is cut before appending
        # The file (and its folder) appear with the first finished item: a run that fails
        # before finishing anything leaves nothing behind.
        self._started = bool(resume and self.path.exists())
        if self._started:
            self._read()

    def _refuse(self, number: int, reason: str) -> OutputError:
        return OutputError(
            f"--resume: {self.path} line {number}: {reason}; the journal is damaged, "
            "rerun with --force instead of --resume to start over"
        )

    def _read(self) -> None:
        try:
            with self.path.open("rb") as fh:
                raw_lines = list(fh)
        except OSError as exc:
            raise OutputError(f"--resume: cannot read {self.path}: {exc.strerror or exc}") from None
        if raw_lines and not raw_lines[-1].endswith(b"\n"):
            raw_lines.pop()  # the torn line of a killed run
        if not raw_lines:
            self._started = False  # killed before its first line was whole: nothing was finished
            return
        self._keep = sum(len(raw) for raw in raw_lines)
        try:
            header = loads_finite(raw_lines[0].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            header = None
        if not isinstance(header, dict) or header.get("identity") != self.identity:
            raise OutputError(
                f"--resume: {self.path} belongs to a different run (other model, data or options); "
                "rerun with --force instead of --resume to start over"
            )
        for number, raw in enumerate(raw_lines[1:], start=2):
            key, value = self._parse(number, raw)
            name = self._key(key)
            if name in self.done and self.done[name] != value:
                raise self._refuse(number, f"a second, different value for key {name}")
            self.done[name] = value

    def _parse(self, number: int, raw: bytes) -> tuple[Any, Any]:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._refuse(number, f"not UTF-8 text (byte {exc.start})") from None
        try:
            doc = loads_finite(text)
        except ValueError as exc:
            raise self._refuse(number, f"not a finite JSON line ({str(exc).splitlines()[0]})") from None
        return self._check(doc, lambda reason: self._refuse(number, reason))

    def _check(self, doc: Any, refuse: Any) -> tuple[Any, Any]:
        if not isinstance(doc, dict) or set(doc) != {"key", "value"}:
            raise refuse('expected an object {"key": ..., "value": ...}')
        try:
            self.schema.model_validate(doc, strict=True, context=self.context)
        except ValidationError as exc:
            raise refuse(_first_error(exc)) from None
        return doc["key"], doc["value"]

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
        """Record a finished item durably; an item its schema refuses is a bug and is not written."""
        line = json.dumps({"key": key, "value": value}, allow_nan=False)

        def bug(reason: str) -> ValueError:
            return ValueError(f"refusing to journal item {self._key(key)}: {reason}")

        self._check(loads_finite(line), bug)
        if not self._started:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", encoding="utf-8") as fh:
                fh.write(json.dumps({"identity": self.identity}) + "\n")
            self._started = True
        elif self._keep and self.path.stat().st_size > self._keep:
            os.truncate(self.path, self._keep)  # the torn tail would glue onto this line
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._keep = 0
        self.done[self._key(key)] = value
        pause = os.environ.get(PAUSE_ENV)
        if pause and len(self.done) == int(pause):
            self._hold()

    def _hold(self) -> None:
        marker = self.path.with_name(self.path.name + ".paused")
        marker.touch()
        deadline = time.monotonic() + PAUSE_S
        while marker.exists() and time.monotonic() < deadline:  # the test removes it, or signals
            time.sleep(_PAUSE_POLL_S)

    def close(self, keep: bool = False) -> None:
        """Remove the journal once the run's results are written (unless ``keep``)."""
        if not keep:
            self.path.unlink(missing_ok=True)
            self.path.with_name(self.path.name + ".paused").unlink(missing_ok=True)
