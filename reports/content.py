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
