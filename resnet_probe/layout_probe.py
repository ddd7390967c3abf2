"""The layout of a run's private model copy, chosen by timing it on this machine, then cached.

Which of NCHW / NHWC and BatchNorm folded / unfolded is fastest depends on the processor, not
on a flag it advertises: on a 2-core AVX2-only EPYC a ResNet-44 forward of 256 images took
0.861 s NCHW, 0.862 s NHWC, 0.974 s NCHW folded and 0.649 s NHWC folded, so neither folding
nor NHWC alone pays there while both together do. So the first run of a model structure on a
(processor or GPU, thread count, precision) times one forward of :data:`PROBE_IMAGES` images
in each candidate layout (after one untimed warm-up each), keeps the fastest, and caches the
choice in ``$RESNET_PROBE_HOME/layouts.json`` beside the batch sizes; results.json records the
choice, where it came from and the timings.

The probe costs about ``4 x 3 x PROBE_IMAGES`` image forwards; runs on fewer than
:data:`MIN_IMAGES` images are not probed (it would exceed 5 % of a single pass over them, let
alone a sweep) and take the device's default (:func:`resnet_probe.inference.prefers_channels_last`,
folded). Inputs that are not images (token ids) have no layout to choose.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from resnet_probe.batch_probe import device_name
from resnet_probe.data import DataSource
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.executor import Executor
from resnet_probe.files import home, loads_finite, write_json
from resnet_probe.inference import fold_batchnorm, prefers_channels_last
from resnet_probe.models.loaded import LoadedModel

PROBE_IMAGES = 32
MIN_IMAGES = 512
CACHE_FORMAT = 1
#: (channels_last, folded), in the order they are timed
CANDIDATES = ((False, False), (True, False), (False, True), (True, True))


def layout_name(channels_last: bool, folded: bool) -> str:
    """``NHWC folded``, ``NCHW`` …"""
    return ("NHWC" if channels_last else "NCHW") + (" folded" if folded else "")


@dataclass(frozen=True)
class LayoutChoice:
    """The layout a run uses and where it came from (results.json ``extra.layout``)."""

    channels_last: bool
    folded: bool
    source: str  # "probe" | "cache" | "option" | "default (…)"
    seconds: dict[str, float] = field(default_factory=dict)  # one forward of PROBE_IMAGES, per layout

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"layout": layout_name(self.channels_last, self.folded), "channels_last":
                               self.channels_last, "folded": self.folded, "from": self.source}
        if self.seconds:
            doc["seconds_per_forward"] = {k: round(v, 5) for k, v in self.seconds.items()}
            doc["images"] = PROBE_IMAGES
        return doc


def cache_path() -> Path:
    """Where the chosen layouts are kept."""
    return home() / "layouts.json"


def layout_key(loaded: LoadedModel, device: torch.device, precision: str, image_size: int, fold: bool) -> str:
    """What decides the fastest layout: the model's structure, the input size, the machine and the precision."""
    doc = {
        "format": CACHE_FORMAT, "spec": str(loaded.spec), "params": loaded.params, "units": loaded.topology.n_units,
        "image_size": image_size, "device": device_name(device), "precision": precision, "fold": fold,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def private_model(loaded: LoadedModel, device: torch.device, channels_last: bool, folded: bool) -> torch.nn.Module:
    """A copy of the loaded model in this layout (the loaded model stays as loaded)."""
    model = copy.deepcopy(loaded.model).to(device).eval()
    if folded:
        fold_batchnorm(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def choose_layout(
    loaded: LoadedModel,
    device: torch.device,
    precision: str,
    data: DataSource | None,
    preprocessing: Preprocessing | None,
    *,
    fold: bool,
    channels_last: bool | None,
    build: Callable[[torch.nn.Module, bool], Executor],
) -> LayoutChoice:
    """The layout to run ``loaded`` in: the option where given, else the cached or probed fastest.

    ``fold`` False: the analysis reads BatchNorm outputs, so only unfolded layouts are candidates.
    ``build(model, channels_last)`` makes the executor the run would use for that copy.
    """
    default = LayoutChoice(prefers_channels_last(device) if channels_last is None else channels_last, fold,
                           "default")
    if channels_last is not None:
        return LayoutChoice(channels_last, fold, "option")
    if data is None or len(data) < MIN_IMAGES:
        return LayoutChoice(default.channels_last, fold, f"default (fewer than {MIN_IMAGES} images: not probed)")
    x, _ = next(iter(data.batches(PROBE_IMAGES, preprocessing, device)))
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        return LayoutChoice(default.channels_last, fold, "default (inputs are not images)")
    key = layout_key(loaded, device, precision, int(x.shape[-1]), fold)
    cached = _cached(key)
    if cached is not None:
        return cached
    executors = {
        layout_name(nhwc, folded): build(private_model(loaded, device, nhwc, folded), nhwc)
        for nhwc, folded in CANDIDATES if fold or not folded
    }
    seconds = {name: float("inf") for name in executors}
    with torch.no_grad():
        for executor in executors.values():
            executor.forward(x)  # warm-up: oneDNN picks and caches its kernels on the first call
        for _ in range(2):  # interleaved rounds, so no layout pays for what the process does first
            for name, executor in executors.items():
                started = time.perf_counter()
                executor.forward(x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                seconds[name] = min(seconds[name], time.perf_counter() - started)
    fastest = min(seconds, key=seconds.__getitem__)
    nhwc, folded = next((c, f) for c, f in CANDIDATES if layout_name(c, f) == fastest)
    choice = LayoutChoice(nhwc, folded, "probe", seconds)
    _remember(key, choice)
    return choice


def _cached(key: str) -> LayoutChoice | None:
    try:
        doc = loads_finite(cache_path().read_text(encoding="utf-8"))
        entry = doc[key]
        seconds = {str(k): float(v) for k, v in entry["seconds"].items()}
        nhwc, folded = entry["channels_last"], entry["folded"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # no cache, another shape, or an entry someone broke: probe again
    if not isinstance(nhwc, bool) or not isinstance(folded, bool):
        return None
    return LayoutChoice(nhwc, folded, "cache", seconds)


def _remember(key: str, choice: LayoutChoice) -> None:
    try:
        doc = loads_finite(cache_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    doc[key] = {"channels_last": choice.channels_last, "folded": choice.folded, "seconds": choice.seconds}
    write_json(cache_path(), doc)
