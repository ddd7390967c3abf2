"""`resnet-probe demo`: the main job, offline, on the embedded digits data set.

Trains (or reuses from the cache) the nets it needs, runs every study and writes
``DIR/index.html`` linking each report with its one-line finding.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from resnet_probe.cli import options as o
from resnet_probe.cli.console import out, run_command
from resnet_probe.cli.response_std import ensure_trained

from resnet_probe.files import atomic_write_text
from resnet_probe.models.spec import parse
from resnet_probe.settings import RunSettings

#: residual net studied, its plain twin, and the Fig. 7 set measured by std-report
STUDIED, PLAIN = "resnet56", "plain56"
STD_SET = ("plain20", "plain56", "resnet20", "resnet56")


@dataclass(frozen=True)
class Study:
    """One report of the demo: where it goes, what runs, with which options."""

    folder: str
    heading: str
    analysis: str
    model: str
    options: dict[str, Any]
    compare: tuple[str, ...] = ()


def studies() -> list[Study]:
    """The demo's studies, in the order of the index."""
    return [
        Study("lesion", f"Lesion: delete each unit of {STUDIED} (Veit Fig. 3), random k-sets (Fig. 5a)",
              "lesion", STUDIED, {"random_k": "1:6", "samples": 3}, (PLAIN,)),
        Study("reorder", f"Reorder: swap units of {STUDIED} (Veit Fig. 5b)",
              "reorder", STUDIED, {"swaps": "1:8", "samples": 2}),
        Study("paths", f"Unraveled view of {STUDIED}: paths by length (Veit Fig. 6a)",
              "paths", STUDIED, {}),
        Study("gradients", f"Gradient per path length in {STUDIED} (Veit Fig. 6b/c)",
              "gradients", STUDIED, {"samples": 48}),
        Study("std", "Layer-response std, plain vs residual (He et al. Fig. 7)",
              "response-std", STD_SET[0], {}, STD_SET[1:]),
        Study("training", "Training curves, plain vs residual (He et al. Fig. 1/6)",
              "train-curves", STD_SET[0], {}, STD_SET[1:]),
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
    from resnet_probe.reports import content

    from resnet_probe.rundir import run_directory

    root = run_directory(out_dir, "demo", "digits", force)
    ensure_trained([parse(m) for m in STD_SET], "digits", seed, device, download=False)
    # NHWC: the same numbers on the digits nets, and 1.1-1.5x faster on a CPU too.
    base = RunSettings(
        model=STUDIED, dataset="digits", limit=limit, batch_size=batch_size, device=device, seed=seed, force=True,
        channels_last=True,
    )
    entries = []
    for study in studies():
        out.rule(study.heading)
        settings = replace(base, model=study.model, out=root / study.folder, title=study.heading)
        record, result = run_command(study.analysis, settings, study.options, compare=study.compare)
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
