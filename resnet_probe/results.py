"""Tensor-free results with a JSON round trip, and the run record around them.

``results.json`` is ``{"analysis", "model", "data", "seed", "device", "versions",
"wall_time_s", "title", "options", "result"}``; ``result`` is the analysis' own dataclass as a
dict. Files are written to a temporary name and renamed, so nothing is ever written half.
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from resnet_probe.errors import OutputError

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
        """Inverse of :meth:`to_dict` for flat results; nested ones override this."""
        names = {f.name for f in dataclasses.fields(cls)} - {"run"}
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_frame(self) -> pd.DataFrame:
        """The result's main table, tidy (one row per configuration, length or layer)."""
        import pandas as pd

        d = self.to_dict()
        return pd.DataFrame([{k: v for k, v in d.items() if isinstance(v, (int, float, str, bool))}])

    def save(self, out_dir: str | Path, *, force: bool = False) -> Path:
        """Write results.json, results.csv, report.html and figures/ into ``out_dir``, as the CLI does."""
        from resnet_probe.rundir import run_directory, write_run

        record = self._record()
        target = run_directory(Path(out_dir), record.analysis, str(record.model.get("spec", "")), force)
        write_run(target, record, self)
        return target

    def _repr_html_(self) -> str:
        from resnet_probe.rundir import renderer

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
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        """Read a results.json document back."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"analysis", "model", "result"} - set(d)
        if missing:
            raise OutputError(f"not a resnet-probe results.json: missing {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in d.items() if k in names} | {"seed": d.get("seed", 0),
                   "device": d.get("device", "cpu"), "data": d.get("data")})


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
