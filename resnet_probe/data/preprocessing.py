"""How images become model input: scale to [0, 1], resize, normalise per channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How images become model input: scale to [0, 1], resize, normalise per channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: int | None = None  # square side; None keeps the data's own size
    source: str = "dataset"  # "checkpoint", "dataset", "timm", "torchvision"

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "input_size": self.input_size,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(d["mean"]), tuple(d["std"]), d.get("input_size"), d.get("source", "dataset"))
