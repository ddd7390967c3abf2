"""What no results.json may hold: an accuracy outside [0, 1], more correct images than images."""

from __future__ import annotations

import re
from typing import Any


def out_of_range(doc: Any, where: str = "") -> str | None:
    """The first number of a result that cannot be: an accuracy outside [0, 1], or more correct than images.

    Every key named ``accuracy``, ``*_accuracy`` or ``accuracies`` holds fractions, and a
    dict with ``correct`` and ``n`` counts images (``0 <= correct <= n``).
    """
    if isinstance(doc, dict):
        correct, n = doc.get("correct"), doc.get("n")
        if isinstance(correct, int) and isinstance(n, int) and not 0 <= correct <= n:
            return f"{where + '.' if where else ''}correct = {correct} of n = {n}; allowed 0 <= correct <= n"
        for key, value in doc.items():
            at = f"{where}.{key}" if where else str(key)
            if _ACCURACY.fullmatch(str(key)):
                for i, v in enumerate(value if isinstance(value, list) else [value]):
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and not 0 <= v <= 1:
                        return f"{at}{f'[{i}]' if isinstance(value, list) else ''} = {v}; an accuracy lies in [0, 1]"
            found = out_of_range(value, at)
            if found is not None:
                return found
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            found = out_of_range(value, f"{where}[{i}]")
            if found is not None:
                return found
    return None


_ACCURACY = re.compile(r"accuracy|\w+_accuracy|accuracies")
