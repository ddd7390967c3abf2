"""Training curves (He et al. 2015, Figs. 1 and 6) read from the history that ``train`` saves.

Nothing is computed on data: each checkpoint written by :func:`resnet_probe.training.loop.train_model`
carries its per-epoch log (train/test loss and error, lr, iteration, seconds) in its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Iterable

if TYPE_CHECKING:
    import pandas as pd

from resnet_probe.analyses.base import Analysis, RunContext
from resnet_probe.errors import CheckpointError
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.results import Result

HISTORY_KEYS: tuple[str, ...] = (
    "epoch", "iteration", "lr", "train_loss", "train_error", "test_loss", "test_error", "seconds",
)  # fmt: skip


@dataclass(frozen=True)
class TrainRun:
    """One training run: what was trained on what, and its per-epoch log."""

    spec: str
    dataset: str | None
    checkpoint: str | None
    residual: bool
    depth: int | None
    history: tuple[dict[str, Any], ...]

    @property
    def final_test_error(self) -> float | None:
        """Test error after the last epoch."""
        return self.history[-1].get("test_error") if self.history else None

    @property
    def final_train_error(self) -> float | None:
        """Training error (augmented batches, training mode) of the last epoch."""
        return self.history[-1].get("train_error") if self.history else None

    @property
    def iterations(self) -> int:
        """Iterations trained."""
        return int(self.history[-1]["iteration"]) if self.history else 0


@dataclass(frozen=True)
class TrainCurvesResult(Result):
    """The histories of several runs, in the order given."""

    analysis: ClassVar[str] = "train-curves"
    runs: tuple[TrainRun, ...]

    def to_frame(self) -> pd.DataFrame:
        """One row per epoch of every run (the checkpoint's training history)."""
        import pandas as pd

        return pd.DataFrame([
            {"model": r.spec, "residual": r.residual, "depth": r.depth, **epoch}
            for r in self.runs
            for epoch in r.history
        ])


def training_run(loaded: LoadedModel) -> TrainRun:
    """The run behind a loaded checkpoint; a checkpoint without a history is a user error."""
    history = loaded.metadata.get("history")
    if not history:
        where = loaded.checkpoint or str(loaded.spec)
        raise CheckpointError(
            f"{where} has no training history; only checkpoints written by `resnet-probe train` have one"
        )
    depth = getattr(loaded.model, "depth", None)
    return TrainRun(
        spec=str(loaded.spec),
        dataset=loaded.metadata.get("dataset"),
        checkpoint=loaded.checkpoint,
        residual=any(u.shortcut_kind != "none" for u in loaded.topology.units),
        depth=depth if isinstance(depth, int) else None,
        history=tuple({k: h.get(k) for k in HISTORY_KEYS} for h in history),
    )


class TrainCurvesAnalysis(Analysis):
    """Train and test error against iteration for the main model and every compared one."""

    name = "train-curves"
    description = "training curves (train dashed, test solid) of checkpoints written by `train`"
    result_type = TrainCurvesResult
    needs_data = False

    def run(self, ctx: RunContext, **options: Any) -> TrainCurvesResult:
        """Collect each model's history; no forward pass."""
        if options:
            raise TypeError(f"unexpected options: {', '.join(sorted(options))}")
        return TrainCurvesResult(runs=tuple(training_run(lm) for lm in _models(ctx)))


def _models(ctx: RunContext) -> Iterable[LoadedModel]:
    yield ctx.loaded
    for loaded, _ in ctx.compare:
        yield loaded
