"""`resnet-probe gradients`: input-gradient norm per path length (Veit et al. Sec. 4.2)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from resnet_probe.analyses.path_gradients import DEFAULT_SAMPLES, DEFAULT_SHARE, PathGradientsAnalysis

from . import options as o
from .pipeline import print_reading, run_analysis

Samples = Annotated[int, typer.Option("--samples", help="Path samples per length (Veit et al.: 1000).")]
Lengths = Annotated[
    Optional[str], typer.Option("--k", help="Path lengths: K, A:B (inclusive) or a comma list; default 0..n.")
]
Share = Annotated[float, typer.Option("--share", help="Share of the total gradient the effective range holds.")]


@o.with_common(batch_size=128)
def gradients(
    common: o.Common, samples: Samples = DEFAULT_SAMPLES, k: Lengths = None, share: Share = DEFAULT_SHARE
) -> None:
    """Gradient magnitude per path length and the effective paths (Veit et al. Fig. 6b/6c).

    Example: resnet-probe gradients --model resnet110 --dataset cifar10 --split train --samples 1000
    """
    _, record, result = run_analysis(
        PathGradientsAnalysis(), common, {"samples": samples, "k": k, "share": share}
    )
    print_reading(record, result)
