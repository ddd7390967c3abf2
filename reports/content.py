"""What a report shows for a result type: figures, tables and a plain-language reading.

Each is a ``functools.singledispatch`` on the result's class; an analysis module registers its
own implementations (see ``reports/lesion.py``). Unregistered results still render: their
numbers appear as a JSON table and the reading says nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import singledispatch
from typing import Any, Callable, Sequence

from matplotlib.axes import Axes

from resnet_probe.results import Result, RunRecord


@dataclass(frozen=True)
class Figure:
    """One figure: a caption and a function that draws it on fresh axes."""

    caption: str
    draw: Callable[[list[Axes]], None]
    panels: int = 1
    width: float = 6.4
    height: float = 4.0


@dataclass(frozen=True)
class Table:
    """A table of numbers: a caption, column names and rows."""

    caption: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)


def _builtin_loaded_now() -> bool:
    """Import the built-in report modules if they were not yet; True when that was needed.

    They register themselves on import; a caller that asks before any report was rendered
    would otherwise get the defaults for a built-in result.
    """
    import sys

    if "resnet_probe.reports.analyses" in sys.modules:
        return False
    from resnet_probe.reports import analyses  # noqa: F401

    return True


#: entry points ``ANALYSIS = package.module``: the report module of an analysis (importing it registers it)
REPORTS = "resnet_probe.reports"


def load_report(analysis: str) -> None:
    """Import the report module an installed package registers for ``analysis``; a broken one is logged."""
    import importlib
    import logging
    from importlib import metadata

    for ep in metadata.entry_points(group=REPORTS):
        if ep.name != analysis:
            continue
        try:
            importlib.import_module(ep.value)
        except Exception as exc:  # a broken plugin report must not take the run down: it renders the defaults
            logging.getLogger("resnet_probe").warning(
                "the report of %s (%s) failed to load: %s: %s", analysis, ep.value, type(exc).__name__, exc
            )


@singledispatch
def figures(result: Result, record: RunRecord) -> list[Figure]:
    """Figures of a result; none by default."""
    return figures(result, record) if _builtin_loaded_now() else []


@singledispatch
def tables(result: Result, record: RunRecord) -> list[Table]:
    """Tables of a result; by default its top-level scalar fields."""
    if _builtin_loaded_now():
        return tables(result, record)
    d = result.to_dict()
    rows = [[k, v] for k, v in d.items() if isinstance(v, (int, float, str, bool))]
    return [Table("Numbers", ["quantity", "value"], rows)] if rows else []


@singledispatch
def reading(result: Result, record: RunRecord) -> list[str]:
    """Plain-language sentences about a result; none by default."""
    return reading(result, record) if _builtin_loaded_now() else []


def provenance_sentence(record: RunRecord) -> str | None:
    """What net the numbers are about and on which data: the first sentence of every reading."""
    prov = record.model.get("provenance")
    if not isinstance(prov, dict):
        return None
    spec, kind = record.model.get("spec", "the model"), prov.get("kind")
    if kind == "published":
        what = f"{spec} with {prov.get('source')}'s published weights ({prov.get('file')})"
    elif kind == "trained":
        acc = prov.get("test_accuracy")
        score = f", test accuracy {100 * acc:.1f} %" if isinstance(acc, (int, float)) else ""
        on = f" of {prov.get('test_size')} test images" if prov.get("test_size") and score else ""
        where = " (the weights cache)" if prov.get("cache") else ""
        what = (f"{spec} trained by resnet-probe{where} on {prov.get('dataset')} for {prov.get('iterations')} "
                f"iterations{score}{on}")
    elif kind == "random":
        what = (f"{spec} with random, untrained weights: every number here describes an untrained network, "
                "not a trained one")
    elif kind == "pretrained":
        what = f"{spec} with its library's pretrained weights"
    elif kind == "hf":
        what = f"{spec}, a Hugging Face {prov.get('architecture')} with the weights saved at {prov.get('path')}"
    elif kind == "checkpoint":
        what = f"{spec} with the weights of {prov.get('file')} ({prov.get('format')} checkpoint)"
    elif kind == "export":
        what = f"{spec}, a torch.export program with its own weights"
    elif kind == "module":
        what = f"{spec}, a module passed in with its weights as they were"
    else:
        what = f"{spec} as its factory built it"
    data = record.data or {}
    if not data:
        return f"The model: {what}; no data."
    given = " (passed in, already preprocessed)" if data.get("preprocessed") else ""
    return f"The model: {what}; the data: {data.get('n')} examples of {data.get('dataset')}{given}."


def full_reading(result: Result, record: RunRecord, *, with_provenance: bool = True) -> list[str]:
    """Where the numbers come from, the analysis' reading, then what the unit view leaves out."""
    first = provenance_sentence(record) if with_provenance else None
    out = ([first] if first else []) + list(reading(result, record))
    unread = int(record.extra.get("unread_additions", 0) or 0)
    if unread:
        units = int(record.model.get("units", 0) or 0)
        out.append(
            f"Coverage: the model holds {units + unread} residual additions but its unit view has {units} units; "
            f"{unread} addition{'s' if unread != 1 else ''} close{'s' if unread == 1 else ''} no unit (inside a "
            "residual branch, or across several units) and stay inside the part that holds "
            f"{'it' if unread == 1 else 'them'}: deleting, reordering and the path counts cover the {units} units "
            "only (see the notes; name the units with units= where this is not what you want)."
        )
    return out


def register(result_type: type[Result]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator factory: ``@register(LesionResult)`` on a function named figures/tables/reading."""

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        kind = fn.__name__.split("_")[-1]
        if kind == "figures":
            figures.register(result_type)(fn)
        elif kind == "tables":
            tables.register(result_type)(fn)
        elif kind == "reading":
            reading.register(result_type)(fn)
        else:
            raise ValueError(f"{fn.__name__}: name must end in _figures, _tables or _reading")
        return fn

    return decorator


def pct(value: float | None) -> str:
    """An accuracy as ``93.26 %``; ``n/a`` when unknown."""
    return "n/a" if value is None else f"{100 * value:.2f} %"


def interval_text(ci: Sequence[float]) -> str:
    """An interval of accuracies as ``[91.5, 94.8] %``."""
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}] %"


def p_text(p: float) -> str:
    """A p-value in three significant digits, or its bound when tiny."""
    return "< 1e-6" if p < 1e-6 else f"{p:.3g}"


MIN_BAND = 5  # fewer samples than this draw no band: the points are shown instead


def level_value(record: RunRecord) -> float:
    """The level of a run's intervals and tests (``--confidence``)."""
    return float(record.extra.get("confidence", 0.95))


def level_of(record: RunRecord) -> str:
    """The level of a run's intervals as ``95 %``."""
    return f"{100 * level_value(record):g} %"


def sample_size_sentence(n: int, tests: int, record: RunRecord) -> str:
    """The smallest change ``tests`` Holm-adjusted paired tests on ``n`` images can call significant."""
    images, points = smallest_detectable(n, tests, level_value(record))
    plural = "s" if tests != 1 else ""
    return (
        f"Sample size: with {n} images and {tests} paired test{plural}, no change smaller than {points:.2f} points "
        f"({images} images lost, none gained) can be significant; one image is {100 / n:.2f} points."
        + (f" {n} images give wide intervals: use the full test set for small effects." if n <= 1000 else "")
    )


def smallest_detectable(n: int, tests: int, confidence: float) -> tuple[int, float]:
    """The fewest images (all lost, none gained) a paired test can call significant after Holm over ``tests``.

    Holm's first step compares the smallest p with ``(1 - confidence) / tests``; returns the
    image count and the accuracy difference it is, in points.
    """
    from resnet_probe.stats import mcnemar_exact

    alpha = (1 - confidence) / max(tests, 1)
    b = 1
    while b <= n and mcnemar_exact(b, 0) >= alpha:
        b += 1
    return b, 100 * b / n if n else math.inf


def adaptive_sentence(used: Sequence[int], total: int, record: RunRecord) -> str | None:
    """What adaptive evaluation saved, or None when the run scored every image (no ``--tolerance``)."""
    tolerance = record.extra.get("tolerance")
    if tolerance is None or not used:
        return None
    stopped = [n for n in used if n < total]
    level = f"{100 * float(record.extra.get('confidence', 0.95)):g} %"
    saved = 1 - sum(used) / (len(used) * total)
    return (
        f"Adaptive evaluation (--tolerance {tolerance:g}): {len(stopped)} of {len(used)} configurations stopped "
        f"once their {level} confidence sequence gave the accuracy to ±{100 * tolerance:g} points, after "
        f"{min(used)}–{max(used)} of {total} images; {100 * saved:.0f} % of the image evaluations were saved. "
        "Their intervals are those anytime-valid confidence sequences (valid at whatever image the run "
        "stopped), wider than a Wilson interval at the same count."
    )
