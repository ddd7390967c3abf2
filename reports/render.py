"""Render a run record and its result into one self-contained HTML file."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from resnet_probe.results import Result, RunRecord, atomic_write_text

from . import content
from .svg import figure_svg

_ENV = Environment(
    loader=PackageLoader("resnet_probe.reports", "templates"),
    autoescape=select_autoescape(["html", "xml"], default_for_string=True, default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _load_content_modules() -> None:
    """Import every built-in report module so their singledispatch entries are registered."""
    from . import analyses  # noqa: F401


def render_report(record: RunRecord, result: Result, title: str | None = None) -> str:
    """The report as an HTML string: header, reading, figures (inline SVG), tables."""
    _load_content_modules()
    figs = []
    for spec in content.figures(result, record):
        # Our own matplotlib output, not user text: safe to insert unescaped.
        figs.append({"caption": spec.caption, "svg": Markup(figure_svg(spec))})
    template = _ENV.get_template("report.html")
    css = (Path(__file__).parent / "templates" / "style.css").read_text(encoding="utf-8")
    return template.render(
        title=title or record.title or f"{record.analysis} — {record.model.get('spec', '?')}",
        record=record,
        meta=_meta_rows(record),
        reading=content.reading(result, record),
        notes=record.extra.get("notes", []),
        figures=figs,
        tables=content.tables(result, record),
        css=Markup(css),
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_report(path: Path, record: RunRecord, result: Result, title: str | None = None) -> None:
    """Render and atomically write the report."""
    atomic_write_text(path, render_report(record, result, title))


def _meta_rows(record: RunRecord) -> list[tuple[str, Any]]:
    model, data = record.model, record.data or {}
    rows: list[tuple[str, Any]] = [
        ("analysis", record.analysis),
        ("model", model.get("spec")),
        ("family", model.get("family")),
        ("units", model.get("units")),
        ("parameters", f"{model.get('params', 0):,}"),
        ("weights", model.get("weights")),
        ("checkpoint", model.get("checkpoint")),
        ("checkpoint sha256", model.get("checkpoint_sha256")),
        ("dataset", data.get("dataset")),
        ("images", data.get("n")),
        ("seed", record.seed),
        ("device", record.device),
        ("wall time", f"{record.wall_time_s:.1f} s"),
        ("versions", ", ".join(f"{k} {v}" for k, v in record.versions.items())),
    ]
    return [(k, v) for k, v in rows if v not in (None, "")]


def render_index(entries: list[dict[str, Any]], seconds: float) -> str:
    """The demo's index page: a link and a one-line finding per report."""
    _load_content_modules()
    css = (Path(__file__).parent / "templates" / "style.css").read_text(encoding="utf-8")
    return _ENV.get_template("index.html").render(
        entries=entries,
        seconds=seconds,
        css=Markup(css),
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
