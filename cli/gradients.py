"""`resnet-probe gradients`: input-gradient norm per path length (Veit et al. Sec. 4.2)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from resnet_probe.cli import options as o
from resnet_probe.cli.console import print_reading, run_command

from resnet_probe.settings import EFFECTIVE_SHARE, GRADIENT_SAMPLES, RunSettings

Samples = Annotated[int, typer.Option("--samples", help="Path samples per length (Veit et al.: 1000).")]
Lengths = Annotated[
    Optional[str], typer.Option("--k", help="Path lengths: K, A:B (inclusive) or a comma list; default 0..n.")
]
Share = Annotated[float, typer.Option("--share", help="Share of the total gradient the effective range holds.")]


@o.with_common(batch_size=128)
def gradients(
    settings: RunSettings, samples: Samples = GRADIENT_SAMPLES, k: Lengths = None, share: Share = EFFECTIVE_SHARE
) -> None:
    """Gradient magnitude per path length and the effective paths (Veit et al. Fig. 6b/6c).

    Example: resnet-probe gradients --model resnet110 --dataset cifar10 --split train --samples 1000
    """
    record, result = run_command("gradients", settings, {"samples": samples, "k": k, "share": share})
    print_reading(record, result)
