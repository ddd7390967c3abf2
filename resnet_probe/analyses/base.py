"""The small base class every analysis derives from, and the context it runs in."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, ContextManager, Iterator

from resnet_probe.data import DataSource
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.executor import Executor
from resnet_probe.journal import Journal
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.results import Result
from resnet_probe.scoring import Stopping
from resnet_probe.settings import CONFIDENCE

Advance = Callable[[int], None]
ProgressFactory = Callable[[str, int], ContextManager[Advance]]


@contextlib.contextmanager
def no_progress(_description: str, _total: int) -> Iterator[Advance]:
    """A progress reporter that reports nothing (library default; the CLI passes rich's)."""
    yield lambda _n: None


@dataclass(frozen=True, eq=False)
class RunContext:
    """What an analysis may use: the model, one executor, the data and the run settings."""

    loaded: LoadedModel
    executor: Executor
    data: DataSource | None = None
    batch_size: int = 256
    seed: int = 0
    progress: ProgressFactory = no_progress
    compare: tuple[tuple[LoadedModel, Executor], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    journal: Journal | None = None  # finished pieces of a resumable run (the CLI's progress.jsonl)
    confidence: float = CONFIDENCE  # level of intervals and paired tests
    tolerance: float | None = None  # adaptive evaluation: stop a configuration once known to +-tolerance

    @property
    def stopping(self) -> Stopping | None:
        """The stopping rule of adaptive evaluation, or None to score every image."""
        if self.tolerance is None:
            return None
        return Stopping(self.tolerance, self.confidence, self.seed)

    @property
    def preprocessing(self) -> Preprocessing | None:
        """The model's own preprocessing when its checkpoint carries one, else the data's."""
        return self.loaded.preprocessing

    def require_data(self, analysis: str) -> DataSource:
        """The data source, which this analysis cannot run without."""
        if self.data is None:
            from resnet_probe.errors import DataError

            raise DataError(f"{analysis} needs data: pass --dataset or --data")
        return self.data


class Analysis(ABC):
    """One analysis: a name, capability flags, and ``run(ctx, **options) -> Result``."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    result_type: ClassVar[type[Result]]
    needs_data: ClassVar[bool] = True
    needs_weights: ClassVar[bool] = True
    needs_layer_outputs: ClassVar[bool] = False  # reads BN outputs: the runner must not fold BN into convs
    resumable: ClassVar[bool] = False  # journals finished pieces in ctx.journal, so --resume works
    batch_probe: ClassVar[bool] = False  # work grows with the images: the runner may time batch sizes on it

    @abstractmethod
    def run(self, ctx: RunContext, **options: Any) -> Result:
        """Compute the result; must leave the model untouched."""
