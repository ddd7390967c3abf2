"""One table of published weights: where each file comes from, its sha256, its preprocessing, its licence.

As torchvision's ``Weights`` enums and timm's pretrained configs do, the preprocessing belongs to
the weights, not to the file they arrive in: :func:`identify` recognises published weights by the
digest of their file or of their tensors, so a safetensors copy of akamaster's ``.th`` file gets
the same normalisation. Files marked ``shipped`` lie in
``resnet_probe/models/published/`` and load with no download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from resnet_probe.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

AKAMASTER_URL = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/{}"
AKAMASTER = "akamaster/pytorch_resnet_cifar10"
SHIPPED_DIR = Path(__file__).parent / "published"
# akamaster normalises CIFAR input with ImageNet statistics.
AKAMASTER_PREPROCESSING = Preprocessing(IMAGENET_MEAN, IMAGENET_STD, None, "weights")


@dataclass(frozen=True)
class PublishedWeights:
    """A published checkpoint of a zoo network."""

    model: str
    dataset: str
    file_name: str
    url: str
    sha256: str  # full digest where known, else the prefix in the file name (torch.hub's check)
    preprocessing: Preprocessing
    licence: str
    source: str
    test_error: float  # as published, on the full test set
    shipped: bool = False
    # checkpoints.tensors_sha256 of the weights: recognises them in any file format (known for shipped files)
    tensors_sha256: str | None = None

    @property
    def label(self) -> str:
        """How results.json names these weights (``weights``): the publisher."""
        return self.source.split("/")[0]

    @property
    def path(self) -> Path | None:
        """The shipped file, or None when it must be downloaded."""
        return SHIPPED_DIR / self.file_name if self.shipped else None


def _akamaster(
    model: str, file_name: str, error: float, sha256: str | None = None, tensors_sha256: str | None = None
) -> PublishedWeights:
    return PublishedWeights(
        model, "cifar10", file_name, AKAMASTER_URL.format(file_name), sha256 or file_name.split("-")[1][:8],
        AKAMASTER_PREPROCESSING, "BSD-2-Clause (LICENSE-akamaster-pytorch_resnet_cifar10.txt)", AKAMASTER, error,
        shipped=sha256 is not None, tensors_sha256=tensors_sha256,
    )


PUBLISHED: dict[tuple[str, str], PublishedWeights] = {
    (w.model, w.dataset): w
    for w in (
        _akamaster("resnet20", "resnet20-12fca82f.th", 0.0827,
                   "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8",
                   "9e09b27e77764e3dbf6bedb22f560a4d35b9adba27f4a359b7ac8a9656f671a8"),
        _akamaster("resnet32", "resnet32-d509ac18.th", 0.0737),
        _akamaster("resnet44", "resnet44-014dd654.th", 0.0690),
        _akamaster("resnet56", "resnet56-4bfd9763.th", 0.0661,
                   "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367",
                   "2e23072590743c56a2f0f14918d1dcf37a797b07eca08f94875a43686bd2b754"),
        _akamaster("resnet110", "resnet110-1d1ed7c2.th", 0.0632),
        _akamaster("resnet1202", "resnet1202-f3b1deed.th", 0.0618),
    )
}
# Data sets whose images the published CIFAR-10 weights were trained for.
CIFAR10_SETS = ("cifar10", "cifar10-sample")


def published(model: str, dataset: str | None) -> PublishedWeights | None:
    """The published weights of a zoo model for a data set (``cifar10-sample`` is CIFAR-10), or None."""
    key = "cifar10" if dataset in CIFAR10_SETS else dataset
    return PUBLISHED.get((model, key or ""))


def identify(model: str, file_sha256: str, tensors: Callable[[], str]) -> PublishedWeights | None:
    """The published weights of zoo ``model`` a checkpoint holds, by its file's digest or its tensors', or None.

    ``tensors`` computes :func:`~resnet_probe.models.checkpoints.tensors_sha256` only when an
    entry needs it, so files of models without published weights are not hashed twice.
    """
    entries = [w for w in PUBLISHED.values() if w.model == model]
    for w in entries:
        if file_sha256 == w.sha256 or (len(w.sha256) < 64 and file_sha256.startswith(w.sha256)):
            return w
    if any(w.tensors_sha256 for w in entries):
        digest = tensors()
        return next((w for w in entries if w.tensors_sha256 == digest), None)
    return None
