"""`resnet-probe demo`: the main job, offline, on the embedded digits data set.

Trains (or reuses from the cache) the nets it needs, runs every study and writes
``DIR/index.html`` linking each report with its one-line finding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnet_probe.cli import options as o
from resnet_probe.cli.console import out, run_command
from resnet_probe.cli.training import ensure_trained

from resnet_probe.files import atomic_write_text
from resnet_probe.models.spec import parse
from resnet_probe.settings import RunSettings

if TYPE_CHECKING:
    from resnet_probe.results import RunRecord

#: the Veit studies: akamaster's trained ResNet-56 on the 846 shipped CIFAR-10 test images
STUDIED, REAL = "resnet56", "cifar10-sample"
#: the He et al. studies need plain twins, which nobody publishes: trained here on digits
STD_SET = ("plain20", "plain56", "resnet20", "resnet56")
DIGITS = "digits"


@dataclass(frozen=True)
class Study:
    """One report of the demo: where it goes, what runs, with which options."""

    folder: str
    heading: str
    analysis: str
    model: str
    dataset: str
    options: dict[str, Any]
    compare: tuple[str, ...] = ()


def studies() -> list[Study]:
    """The demo's studies, in the order of the index."""
    return [
        Study("lesion", f"Lesion: delete each unit of {STUDIED} (Veit Fig. 3), random k-sets (Fig. 5a)",
              "lesion", STUDIED, REAL, {"random_k": "1:6", "samples": 5}),
        Study("reorder", f"Reorder: swap units of {STUDIED} (Veit Fig. 5b)",
              "reorder", STUDIED, REAL, {"swaps": "1:6", "samples": 5}),
        Study("paths", f"Unraveled view of {STUDIED}: paths by length (Veit Fig. 6a)",
              "paths", STUDIED, REAL, {}),
        Study("gradients", f"Gradient per path length in {STUDIED} (Veit Fig. 6b/c)",
              "gradients", STUDIED, REAL, {"samples": 48}),
        Study("std", "Layer-response std, plain vs residual (He et al. Fig. 7)",
              "response-std", STD_SET[0], DIGITS, {}, STD_SET[1:]),
        Study("training", "Training curves, plain vs residual (He et al. Fig. 1/6)",
              "train-curves", STD_SET[0], DIGITS, {}, STD_SET[1:]),
    ]


def demo(
    out_dir: o.Out = None,
    force: o.Force = False,
    device: o.Device = "auto",
    seed: o.Seed = 0,
    batch_size: o.BatchSize = 256,
    limit: o.Limit = None,
) -> None:
    """Every study, offline: Veit's on the shipped ResNet-56 and CIFAR-10 sample, He's on digits nets trained here."""
    started = time.perf_counter()
    from resnet_probe.reports import content

    from resnet_probe.rundir import run_directory

    root = run_directory(out_dir, "demo", STUDIED, force)
    ensure_trained([parse(m) for m in STD_SET], DIGITS, seed, device, download=False)
    # NHWC: the same numbers on the digits nets, and 1.1-1.5x faster on a CPU too.
    base = RunSettings(
        model=STUDIED, dataset=REAL, limit=limit, batch_size=batch_size, device=device, seed=seed, force=True,
        channels_last=True,
    )
    entries = []
    for study in studies():
        out.rule(study.heading)
        settings = replace(
            base, model=study.model, dataset=study.dataset, out=root / study.folder, title=study.heading
        )
        record, result = run_command(study.analysis, settings, study.options, compare=study.compare)
        reading = content.full_reading(result, record, with_provenance=False)
        entries.append({
            "href": f"{study.folder}/report.html",
            "heading": study.heading,
            "finding": reading[0] if reading else "",
            "seconds": record.wall_time_s,
            "data": _data_text(record, study),
        })
        if reading:
            out.print(reading[0], markup=False)
    write_index(root / "index.html", entries, time.perf_counter() - started)
    out.print(f"wrote {root / 'index.html'}")


def write_index(path: Path, entries: list[dict[str, Any]], seconds: float) -> None:
    """The index page: one link and one finding per report."""
    from resnet_probe.reports.render import render_index

    atomic_write_text(path, render_index(entries, seconds))


def _data_text(record: RunRecord, study: Study) -> str:
    """Which data a study used, for the index: its name and image count."""
    if study.analysis == "train-curves":
        return f"{study.dataset}: the training histories of the nets trained for this demo"
    if record.data is None:
        return "no data (the model's structure only)"
    return f"{record.data.get('dataset')}: {record.data.get('n')} images"
