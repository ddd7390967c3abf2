"""The report renderer, found through the entry-point group ``resnet_probe.renderers``, and what it is given.

A renderer sees a run record and a result through the small protocols below (results.py's
``RunRecord`` and ``Result`` satisfy them), so this module imports neither.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from resnet_probe.errors import OutputError

RENDERERS = "resnet_probe.renderers"


class Record(Protocol):
    """A run record: what results.json holds about the run."""

    @property
    def analysis(self) -> str:
        """The analysis' name."""

    @property
    def title(self) -> str | None:
        """The report's title, if one was given."""

    def to_dict(self) -> dict[str, Any]:
        """The results.json document."""


class ResultData(Protocol):
    """An analysis result: plain data with a main table."""

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-friendly data."""

    def to_frame(self) -> Any:
        """The result's main table (a pandas DataFrame)."""


class Renderer(Protocol):
    """What turns a result into its report: the HTML page, the figure files, inline HTML."""

    def write(self, out_dir: Path, record: Record, result: ResultData) -> list[Path]:
        """Write report.html and figures/ into ``out_dir``; return the paths written."""

    def inline(self, record: Record, result: ResultData) -> str:
        """The report's figures and reading as an HTML fragment (for Jupyter)."""


@lru_cache(maxsize=1)
def renderer() -> Renderer:
    """The installed report renderer (entry point ``resnet_probe.renderers: html``)."""
    for ep in metadata.entry_points(group=RENDERERS):
        if ep.name == "html":
            found: Renderer = ep.load()()
            return found
    raise OutputError(f"no report renderer installed (entry point group {RENDERERS!r}); reinstall resnet-probe")
