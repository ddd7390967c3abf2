"""Tensor-free results with a JSON round trip, and the run record around them.

``results.json`` is ``{"analysis", "model", "data", "seed", "device", "versions",
"wall_time_s", "title", "options", "result"}``; ``result`` is the analysis' own dataclass as a
dict. Files are written to a temporary name and renamed, so nothing is ever written half.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from resnet_probe.errors import OutputError
from resnet_probe.result_checks import out_of_range

if TYPE_CHECKING:
    import pandas as pd

R = TypeVar("R", bound="Result")


@dataclasses.dataclass(frozen=True)
class Result:
    """Base of every analysis result: plain data, no tensors.

    ``run`` is the record of the run that produced it (model, data, seed, options), set by the
    runner; it is not part of the result's own data (``to_dict`` leaves it out).
    """

    analysis: ClassVar[str] = ""
    run: RunRecord | None = dataclasses.field(default=None, kw_only=True, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (dataclasses, tuples and lists become dicts and lists)."""
        d = dataclasses.asdict(dataclasses.replace(self, run=None))
        del d["run"]
        return _plain(d)

    @classmethod
    def from_dict(cls: type[R], d: dict[str, Any]) -> R:
        """Inverse of :meth:`to_dict`, nested dataclasses and tuples included, by the fields' annotations.

        Written once for every result: pydantic builds the nested dataclasses from their dicts
        (lists back to tuples); keys the result does not have are ignored, missing ones take their
        defaults, and :meth:`upgraded` fills in what older files lack. Types are checked strictly
        afterwards (:func:`read_result`).
        """
        names = {f.name for f in dataclasses.fields(cls)} - {"run"}
        doc = {k: v for k, v in cls.upgraded(d).items() if k in names}
        return TypeAdapter(cls).validate_python(doc)

    @classmethod
    def upgraded(cls, d: dict[str, Any]) -> dict[str, Any]:
        """``d`` with what results.json files of earlier versions lack filled in (nothing by default)."""
        return d

    def to_frame(self) -> pd.DataFrame:
        """The result's main table, tidy (one row per configuration, length or layer)."""
        import pandas as pd

        d = self.to_dict()
        return pd.DataFrame([{k: v for k, v in d.items() if isinstance(v, (int, float, str, bool))}])

    def save(self, out_dir: str | Path, *, force: bool = False) -> Path:
        """Write results.json, results.csv, report.html and figures/ into ``out_dir``, as the CLI does."""
        from resnet_probe.rundir import claim_run_directory, write_run

        record = self._record()
        spec = str(record.model.get("spec", ""))
        with claim_run_directory(Path(out_dir), record.analysis, spec, force) as target:
            write_run(target, record, self)
        return target

    def _repr_html_(self) -> str:
        from resnet_probe.renderers import renderer

        return renderer().inline(self._record(), self)

    def _record(self) -> RunRecord:
        if self.run is None:
            raise OutputError("this result has no run record; results from resnet_probe's API carry one")
        return self.run


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and obj != obj:  # NaN is not JSON
        return None
    return obj


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """Everything results.json holds about one run."""

    analysis: str
    model: dict[str, Any]
    data: dict[str, Any] | None
    seed: int
    device: str
    result: dict[str, Any]
    wall_time_s: float = 0.0
    title: str | None = None
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    versions: dict[str, str] = dataclasses.field(default_factory=lambda: versions())
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The results.json document."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "results.json") -> RunRecord:
        """Read a results.json document back; wrong types or ranges are an :class:`OutputError` naming the field."""
        missing = {"analysis", "model", "result"} - set(d)
        if missing:
            raise OutputError(f"{where}: not a resnet-probe results.json: missing {', '.join(sorted(missing))}")
        try:
            _RecordDoc.model_validate(d, strict=True)
        except ValidationError as exc:
            raise OutputError(f"{where}: {_first_error(exc)}") from None
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names} | {"seed": d.get("seed", 0),
                   "device": d.get("device", "cpu"), "data": d.get("data")})


def read_result(result_type: type[R], record: RunRecord, where: str = "results.json") -> R:
    """The result a results.json holds, checked: the analysis' own ``from_dict``, then types and ranges.

    Types are checked on what ``from_dict`` built (so defaults it fills in for older files
    count), against the result dataclass's annotations; a null where a number belongs is a
    NaN the writer could not store in JSON.
    """
    try:
        result = result_type.from_dict(record.result)
    except ValidationError as exc:
        error = exc.errors()[0]
        if error["type"] == "missing":
            at = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
            raise OutputError(f"{where}: 'result' is not a {record.analysis} result (result.{at} is missing)") from None
        raise OutputError(f"{where}: result.{_described(exc)}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise OutputError(f"{where}: 'result' is not a {record.analysis} result ({_why(exc)})") from None
    if not isinstance(result, result_type):
        raise OutputError(f"{where}: 'result' is not a {record.analysis} result")
    try:
        checked = _validated(result_type, result.to_dict())
    except ValidationError as exc:
        raise OutputError(f"{where}: result.{_describe(exc.errors()[0])}") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise OutputError(f"{where}: 'result' is not a {record.analysis} result ({_why(exc)})") from None
    problem = _non_finite(dataclasses.asdict(checked)) or out_of_range(record.result)
    if problem is not None:
        raise OutputError(f"{where}: result.{problem}")
    return dataclasses.replace(result, run=record)


def _validated(result_type: type[R], doc: dict[str, Any]) -> R:
    """``doc`` as ``result_type`` by its annotations (strict: no string for a number); ValidationError if not.

    A null where a float belongs is a NaN the writer could not store in JSON: it passes.
    """
    adapter = TypeAdapter(result_type)
    try:
        return adapter.validate_json(json.dumps(doc), strict=True)
    except ValidationError as exc:
        if any(not (e["type"] == "float_type" and e.get("input") is None) for e in exc.errors()):
            raise
        for e in exc.errors():
            *parents, last = e["loc"]
            node: Any = doc
            for part in parents:
                node = node[part]
            node[last] = 0.0
        return adapter.validate_json(json.dumps(doc), strict=True)


def _non_finite(doc: Any, where: str = "") -> str | None:
    """The first float of ``doc`` that is infinite (a number too large for a float), or None."""
    if isinstance(doc, float) and not math.isfinite(doc):
        return f"{where} overflows a float; expected a finite number"
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, (list, tuple)) else ()
    for key, value in items:
        found = _non_finite(value, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip("."))
        if found is not None:
            return found
    return None


_OBJECT = re.compile(r"a valid dictionary( or instance of \w+)?")


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def _describe(error: Any) -> str:
    where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
    shown = repr(error.get("input"))
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    message = _OBJECT.sub("a JSON object", error["msg"].removeprefix("Value error, "))
    return f"{where} is {shown}: {message}"


def _described(exc: ValidationError) -> str:
    """The first error, where an integer no float holds reads as the overflow it is."""
    error = exc.errors()[0]
    value = error.get("input")
    if error["type"].startswith("float") and isinstance(value, int) and not isinstance(value, bool):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
        return f"{where} overflows a float; expected a finite number"
    return _describe(error)


def _first_error(exc: ValidationError) -> str:
    return _describe(exc.errors()[0])


class _Block(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)


class _PreprocessingBlock(_Block):
    mean: list[float]
    std: list[Annotated[float, Field(gt=0)]]
    input_size: int | None = Field(default=None, ge=1)
    resize: int | None = Field(default=None, ge=1)
    crop: int | None = Field(default=None, ge=1)
    source: str = "dataset"


class _ModelBlock(_Block):
    spec: str
    family: str | None = None
    units: int = Field(default=0, ge=0)
    params: int = Field(default=0, ge=0)
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    weights: str | None = None
    preprocessing: _PreprocessingBlock | None = None


class _DataBlock(_Block):
    dataset: str | None = None
    split: str | None = None
    n: int = Field(default=0, ge=0)
    num_classes: int = Field(default=0, ge=0)
    path: str | None = None


class _ExtraBlock(_Block):
    notes: list[str] = []
    confidence: float = Field(default=0.95, gt=0, lt=1)
    tolerance: float | None = Field(default=None, gt=0, lt=0.5)
    unread_additions: int = Field(default=0, ge=0)


class _RecordDoc(_Block):
    analysis: str
    model: _ModelBlock
    data: _DataBlock | None = None
    seed: int = Field(default=0, ge=0)
    device: str = "cpu"
    result: dict[str, Any]
    wall_time_s: float = Field(default=0.0, ge=0)
    title: str | None = None
    options: dict[str, Any] = {}
    versions: dict[str, str] = {}
    extra: _ExtraBlock = _ExtraBlock()


def versions() -> dict[str, str]:
    """Versions of the pieces that decide the numbers."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("resnet-probe", "torch", "torchvision", "timm", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out
