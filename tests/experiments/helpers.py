"""Made-up runs for the statistics and reading tests."""

from __future__ import annotations

import numpy as np

from resnet_probe.experiments.result import ExperimentRun
from resnet_probe.experiments.summary import error_interval
from resnet_probe.stats import pack_bits

N_TEST, N_TRAIN = 40, 60


def make_run(cell: str, model: str, seed: int, test: np.ndarray, train: np.ndarray,
             depth: int | None = None) -> ExperimentRun:
    """A run of ``model`` whose per-image correctness is ``test`` and ``train`` (depth: read off the name)."""
    return ExperimentRun(
        cell=cell, model=model, kind="residual" if model.startswith("resnet") else "plain",
        family="cifar-resnet" if model.startswith("resnet") else "cifar-plain", depth=depth or int(model[-2:]),
        residual=model.startswith("resnet"), seed=seed, params=1000, flops=2000, epochs=1, iterations=2,
        recipe={"name": "digits"}, test_error=1 - test.mean(), test_ci=error_interval(int(test.sum()), test.size, 0.95),
        test_n=test.size, test_hits=pack_bits(test), train_error=1 - train.mean(),
        train_ci=error_interval(int(train.sum()), train.size, 0.95), train_n=train.size, train_hits=pack_bits(train),
        train_error_running=0.5, history=(), seconds=1.0, train_images_per_s=10.0 + seed,
        inference_images_per_s=100.0, device="cpu", key=f"s{seed}-x", checkpoint="x",
    )
