"""`resnet-probe demo`: the main job, offline, on the embedded digits data set.

Trains (or reuses from the cache) the nets it needs, runs every study and writes
``DIR/index.html`` linking each report with its one-line finding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from resnet_probe.reports import content

from resnet_probe.analyses.base import Analysis
from resnet_probe.analyses.lesion import LesionAnalysis
from resnet_probe.analyses.path_gradients import PathGradientsAnalysis
from resnet_probe.analyses.paths import PathsAnalysis
from resnet_probe.analyses.reorder import ReorderAnalysis
from resnet_probe.analyses.response_std import ResponseStdAnalysis
from resnet_probe.analyses.train_curves import TrainCurvesAnalysis
from resnet_probe.results import atomic_write_text
from resnet_probe.spec import parse

from . import options as o
from .console import out
from .output import run_directory
from .pipeline import run_analysis
from .std_report import ensure_trained

#: residual net studied, its plain twin, and the Fig. 7 set measured by std-report
STUDIED, PLAIN = "resnet56", "plain56"
STD_SET = ("plain20", "plain56", "resnet20", "resnet56")


@dataclass(frozen=True)
class Study:
    """One report of the demo: where it goes, what runs, with which options."""

    folder: str
    heading: str
    analysis: Analysis
    model: str
    options: dict[str, Any]
    compare: tuple[str, ...] = ()


def studies() -> list[Study]:
    """The demo's studies, in the order of the index."""
    return [
        Study("lesion", f"Lesion: delete each unit of {STUDIED} (Veit Fig. 3), random k-sets (Fig. 5a)",
              LesionAnalysis(), STUDIED, {"random_k": "1:6", "samples": 3}, (PLAIN,)),
        Study("reorder", f"Reorder: swap units of {STUDIED} (Veit Fig. 5b)",
              ReorderAnalysis(), STUDIED, {"swaps": "1:8", "samples": 2}),
        Study("paths", f"Unraveled view of {STUDIED}: paths by length (Veit Fig. 6a)",
              PathsAnalysis(), STUDIED, {}),
        Study("gradients", f"Gradient per path length in {STUDIED} (Veit Fig. 6b/c)",
              PathGradientsAnalysis(), STUDIED, {"samples": 48}),
        Study("std", "Layer-response std, plain vs residual (He et al. Fig. 7)",
              ResponseStdAnalysis(), STD_SET[0], {}, STD_SET[1:]),
        Study("training", "Training curves, plain vs residual (He et al. Fig. 1/6)",
              TrainCurvesAnalysis(), STD_SET[0], {}, STD_SET[1:]),
    ]


def demo(
    out_dir: o.Out = None,
    force: o.Force = False,
    device: o.Device = "auto",
    seed: o.Seed = 0,
    batch_size: o.BatchSize = 256,
    limit: o.Limit = None,
) -> None:
    """Train what is missing on the embedded digits data, run every study, write DIR/index.html."""
    started = time.perf_counter()
    root = run_directory(out_dir, "demo", "digits", force)
    ensure_trained([parse(m) for m in STD_SET], "digits", seed, device, download=False)
    # NHWC: the same numbers on the digits nets, and 1.1-1.5x faster on a CPU too.
    base = o.Common(
        model=STUDIED, dataset="digits", limit=limit, batch_size=batch_size, device=device, seed=seed, force=True,
        channels_last=True,
    )
    entries = []
    for study in studies():
        out.rule(study.heading)
        common = replace(base, model=study.model, out=root / study.folder, title=study.heading)
        _, record, result = run_analysis(study.analysis, common, study.options, compare=study.compare)
        reading = content.reading(result, record)
        entries.append({
            "href": f"{study.folder}/report.html",
            "heading": study.heading,
            "finding": reading[0] if reading else "",
            "seconds": record.wall_time_s,
        })
    write_index(root / "index.html", entries, time.perf_counter() - started)
    out.print(f"wrote {root / 'index.html'}")


def write_index(path: Path, entries: list[dict[str, Any]], seconds: float) -> None:
    """The index page: one link and one finding per report."""
    from resnet_probe.reports.render import render_index

    atomic_write_text(path, render_index(entries, seconds))
