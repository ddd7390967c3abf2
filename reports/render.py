"""Render a run record and its result into one self-contained HTML file."""

from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from resnet_probe.reports import content
from resnet_probe.reports.content import Figure
from resnet_probe.reports.svg import Drawn, draw

from resnet_probe.files import atomic_target, atomic_write_text
from resnet_probe.results import Result, RunRecord

_ENV = Environment(
    loader=PackageLoader("resnet_probe.reports", "templates"),
    autoescape=select_autoescape(["html", "xml"], default_for_string=True, default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _load_content_modules(analysis: str | None = None) -> None:
    """Import every built-in report module, and the one registered for ``analysis`` (a plugin's)."""
    from resnet_probe.reports import analyses  # noqa: F401

    if analysis is not None:
        content.load_report(analysis)


def figure_stem(index: int, caption: str) -> str:
    """File name of a figure under figures/: its number and the first words of its caption."""
    words = re.findall(r"[a-z0-9]+", caption.lower())[:6]
    return f"fig{index + 1}-" + "-".join(words) if words else f"fig{index + 1}"


def _drawn(record: RunRecord, result: Result, pdf: bool) -> list[tuple[Figure, Drawn]]:
    _load_content_modules(record.analysis)
    return [(spec, draw(spec, pdf=pdf)) for spec in content.figures(result, record)]


def render_report(
    record: RunRecord, result: Result, title: str | None = None, drawn: list[tuple[Figure, Drawn]] | None = None
) -> str:
    """The report as an HTML string: header, reading, figures (inline SVG), tables."""
    drawn = _drawn(record, result, pdf=False) if drawn is None else drawn
    # Our own matplotlib output, not user text: safe to insert unescaped.
    figs = [{"caption": spec.caption, "svg": Markup(d.inline)} for spec, d in drawn]
    template = _ENV.get_template("report.html")
    return template.render(
        title=title or record.title or f"{record.analysis} — {record.model.get('spec', '?')}",
        record=record,
        meta=_meta_rows(record),
        reading=content.full_reading(result, record),
        notes=record.extra.get("notes", []),
        figures=figs,
        tables=content.tables(result, record),
        css=Markup(_css()),
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_report(path: Path, record: RunRecord, result: Result, title: str | None = None) -> None:
    """Render and atomically write the report."""
    atomic_write_text(path, render_report(record, result, title))


class HtmlRenderer:
    """The built-in renderer (entry point ``resnet_probe.renderers: html``)."""

    def write(self, out_dir: Path, record: RunRecord, result: Result) -> list[Path]:
        """report.html, and every figure once as figures/NAME.svg and .pdf (drawn once for both)."""
        drawn = _drawn(record, result, pdf=True)
        written = []
        for i, (spec, d) in enumerate(drawn):
            stem = out_dir / "figures" / figure_stem(i, spec.caption)
            atomic_write_text(stem.with_suffix(".svg"), d.svg)
            with atomic_target(stem.with_suffix(".pdf")) as tmp:
                tmp.write_bytes(d.pdf or b"")
            written += [stem.with_suffix(".svg"), stem.with_suffix(".pdf")]
        atomic_write_text(out_dir / "report.html", render_report(record, result, record.title, drawn))
        return [*written, out_dir / "report.html"]

    def inline(self, record: RunRecord, result: Result) -> str:
        """Reading, figures and tables as one HTML fragment (a Jupyter cell's output)."""
        _load_content_modules(record.analysis)
        return _ENV.get_template("inline.html").render(
            reading=content.full_reading(result, record),
            figures=[{"caption": s.caption, "svg": Markup(d.inline)} for s, d in _drawn(record, result, pdf=False)],
            tables=content.tables(result, record),
        )


def _css() -> str:
    return (Path(__file__).parent / "templates" / "style.css").read_text(encoding="utf-8")


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
        ("checkpoint format", model.get("checkpoint_format")),
        ("preprocessing", preprocessing_text(model.get("preprocessing"))),
        ("dataset", data.get("dataset")),
        ("images", data.get("n")),
        ("seed", record.seed),
        ("device", record.device),
        ("wall time", f"{record.wall_time_s:.1f} s"),
        ("versions", ", ".join(f"{k} {v}" for k, v in record.versions.items())),
    ]
    return [(k, v) for k, v in rows if v not in (None, "")]


def preprocessing_text(prep: dict[str, Any] | None) -> str | None:
    """The preprocessing of a run in one line: statistics, sizes, and where they came from."""
    if not prep:
        return None

    def numbers(values: list[float]) -> str:
        return ", ".join(f"{v:.4g}" for v in values)

    parts = [f"mean ({numbers(prep.get('mean', []))})", f"std ({numbers(prep.get('std', []))})"]
    if prep.get("resize"):
        parts.append(f"resize {prep['resize']}")
    if prep.get("crop"):
        parts.append(f"centre crop {prep['crop']}")
    if not prep.get("resize") and not prep.get("crop"):
        parts.append("native size")
    origin = prep.get("from") or prep.get("source")
    return ", ".join(parts) + (f"; from {origin}" if origin else "")


def render_index(entries: list[dict[str, Any]], seconds: float) -> str:
    """The demo's index page: a link and a one-line finding per report."""
    _load_content_modules()
    return _ENV.get_template("index.html").render(
        entries=entries,
        seconds=seconds,
        css=Markup(_css()),
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
