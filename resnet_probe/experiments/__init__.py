"""Grids of trainings over the cache: ``experiment depth``, ``shortcut`` and ``blocks``.

Example:
    >>> from resnet_probe.experiments import build_grid, open_splits, run_experiment
    >>> train, test = open_splits("digits", None, None, False)
    >>> result, _ = run_experiment(build_grid("depth", depths=(20, 32)), train, test)
    >>> result.to_frame()[["model", "seed", "train_error", "test_error"]]
"""

from resnet_probe.experiments.grid import EXPERIMENTS, Cell, Grid, build_grid
from resnet_probe.experiments.runs import TrainOptions, cache_key
from resnet_probe.experiments.study import ExperimentSettings, Outcome, open_splits, run_experiment, run_into

__all__ = [
    "EXPERIMENTS", "Cell", "ExperimentSettings", "Grid", "Outcome", "TrainOptions", "build_grid", "cache_key",
    "open_splits", "run_experiment", "run_into",
]
