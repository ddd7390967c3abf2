"""The settings of one run (what the shared CLI options say) and the analyses' defaults.

Torch-free on purpose: the CLI builds its options from here without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from resnet_probe.models.spec import ModelSpec, parse

#: random k-sets per k (lesion --random-k)
LESION_SAMPLES = 20
#: random orders per swap count (reorder)
REORDER_SAMPLES = 10
#: sampled routes per path length (gradients, Veit Sec. 4.2)
GRADIENT_SAMPLES = 1000
#: share of the total gradient the effective paths hold
EFFECTIVE_SHARE = 0.9
#: images per batch where none is given and none is probed (resnet_probe.batch_probe)
BATCH_SIZE = 256
#: level of every interval and of the significance of every paired test
CONFIDENCE = 0.95


def reads_digits(dataset: str | None, data: str | Path | None) -> bool:
    """Whether ``--dataset``/``--data`` select the embedded digits (the default when neither is given)."""
    return data is None and (dataset or "digits") == "digits"


@dataclass(frozen=True)
class RunSettings:
    """What every analysis run shares: model, weights, data, device, seed and run directory."""

    model: str  # as the user wrote it (run directory names); ``spec`` is it parsed, once
    checkpoint: Path | None = None
    dataset: str | None = None
    data: Path | None = None
    limit: int | None = None
    batch_size: int | None = None  # None: the runner times a few sizes on the analysis (batch_probe)
    device: str = "auto"
    seed: int = 0
    out: Path | None = None
    force: bool = False
    title: str | None = None
    random_init: bool = False
    pretrained: bool = False
    download: bool = False
    precision: str = "fp32"
    split: str = "test"
    resume: bool = False
    compile: bool = False
    workers: int = 0
    channels_last: bool | None = None  # None: the executor's default (on with CUDA)
    confidence: float = CONFIDENCE
    tolerance: float | None = None  # adaptive evaluation: stop each configuration once known to +-tolerance
    train_missing: bool = True  # the CLI trains a zoo model that has no weights on digits yet
    mean: tuple[float, ...] | None = None  # --mean/--std: the preprocessing of a model file that carries none
    std: tuple[float, ...] | None = None
    spec: ModelSpec | None = None  # parsed from ``model`` unless given (a module passed in has no parsable name)

    def __post_init__(self) -> None:
        if self.spec is None and self.model:
            object.__setattr__(self, "spec", parse(self.model))

    @property
    def model_spec(self) -> ModelSpec:
        """The parsed model spec (a template without a model has none)."""
        if self.spec is None:
            from resnet_probe.errors import UnknownModelError

            raise UnknownModelError("no model given; pass --model")
        return self.spec

    @property
    def weights(self) -> str:
        """Which weights ``load_model`` should use: auto, random or pretrained."""
        from resnet_probe.errors import ProbeError

        if self.random_init and self.pretrained:
            raise ProbeError("--random-init and --pretrained exclude each other")
        return "random" if self.random_init else "pretrained" if self.pretrained else "auto"
