"""The result of an experiment (``resnet-probe experiment depth|shortcut|blocks``): runs, cells, paired tests.

An experiment trains a grid of nets rather than analysing one loaded model, so it is no
:class:`~resnet_probe.analyses.base.Analysis` plugin: :func:`resnet_probe.experiments.run_experiment`
computes this result and the experiment command re-renders it from the cache.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import pandas as pd

from resnet_probe.results import Result

# Fields of a run that depend on the machine, the process or the cache's location, not on the
# numbers the run computed: a torchrun run and a single process agree on everything else.
MACHINE_FIELDS: tuple[str, ...] = ("seconds", "train_images_per_s", "inference_images_per_s", "checkpoint")


@dataclass(frozen=True)
class GridNet:
    """What a run's or a cell's net is: the cell label and zoo name, what it stands for, its size."""

    cell: str
    model: str
    kind: str
    family: str
    depth: int | None
    residual: bool
    params: int
    flops: int  # forward FLOPs per image (torch.utils.flop_counter: 2 per multiply-add)


@dataclass(frozen=True)
class ExperimentRun(GridNet):
    """One trained net of the grid: what it is, its errors with intervals, its cost.

    ``train_error`` is measured after training in eval mode on the unaugmented training set (the
    same images for every net, so it can be compared with a paired test); ``train_error_running``
    is the training-mode error over the last epoch's augmented batches (He et al.'s thin curves).
    ``test_hits``/``train_hits`` are the per-image correctness, packed (:func:`stats.pack_bits`).
    """

    seed: int
    epochs: int
    iterations: int
    recipe: dict[str, Any]
    test_error: float
    test_ci: tuple[float, float]
    test_n: int
    test_hits: str
    train_error: float
    train_ci: tuple[float, float]
    train_n: int
    train_hits: str
    train_error_running: float | None
    history: tuple[dict[str, Any], ...]
    seconds: float  # training time, summed over the run's epochs (resumed parts included)
    train_images_per_s: float | None  # None when the run was trained by an earlier, killed process only
    inference_images_per_s: float
    device: str
    key: str  # the cache key: model, data, recipe and seed
    checkpoint: str


@dataclass(frozen=True)
class ExperimentCell(GridNet):
    """A cell's repeats summarised: mean, sample std (None for one seed) and best, per split.

    ``test_ci`` is the Wilson interval of the pooled test images of every repeat (the test-set
    uncertainty); the std across seeds is the training's.
    """

    repeats: int
    seeds: tuple[int, ...]
    test_error_mean: float
    test_error_std: float | None
    test_error_best: float
    test_ci: tuple[float, float]
    train_error_mean: float
    train_error_std: float | None
    train_error_best: float
    train_ci: tuple[float, float]
    train_images_per_s: float | None
    inference_images_per_s: float
    paper_error: float | None  # the paper's CIFAR-10 test error (%), when the data set is CIFAR-10
    paper: str | None  # where that number is printed and for which net


@dataclass(frozen=True)
class Comparison:
    """Cell ``a`` against cell ``b`` on the same images: exact McNemar on the discordant pairs.

    With repeats, seed i of ``a`` is paired with seed i of ``b`` and the discordant counts are
    summed over the pairs. ``p_holm`` is Holm-adjusted over every comparison of the experiment.
    """

    a: str
    b: str
    split: str  # "test" | "train"
    a_error: float
    b_error: float
    a_only: int  # images a gets right and b wrong
    b_only: int
    pairs: int
    p: float
    p_holm: float
    significant: bool

    @property
    def a_better(self) -> bool:
        """Whether ``a`` has the lower error."""
        return self.a_error < self.b_error


@dataclass(frozen=True)
class ExperimentResult(Result):
    """A whole experiment: every run, the cells' summaries, the paired tests and what was skipped."""

    analysis: ClassVar[str] = "experiment"
    experiment: str
    question: str
    dataset: str
    repeats: int
    runs: tuple[ExperimentRun, ...]
    cells: tuple[ExperimentCell, ...]
    comparisons: tuple[Comparison, ...]
    skipped: tuple[str, ...] = ()
    then: tuple[dict[str, str], ...] = ()  # per run (in run order): analysis name -> its report, relative

    def cell(self, label: str) -> ExperimentCell:
        """The summary of the cell called ``label``."""
        for c in self.cells:
            if c.cell == label:
                return c
        raise KeyError(label)

    def to_frame(self) -> pd.DataFrame:
        """One row per run: the run's scalars (no per-image bits, no history)."""
        import pandas as pd

        rows = []
        for run in self.runs:
            row = {f.name: getattr(run, f.name) for f in fields(run)
                   if f.name not in ("test_hits", "train_hits", "history", "recipe", "test_ci", "train_ci")}
            row |= {"test_ci_low": run.test_ci[0], "test_ci_high": run.test_ci[1],
                    "train_ci_low": run.train_ci[0], "train_ci_high": run.train_ci[1], "recipe": run.recipe["name"]}
            rows.append(row)
        return pd.DataFrame(rows)
