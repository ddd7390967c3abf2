"""The small base class every analysis derives from, and the context it runs in."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, ContextManager, Iterator, cast

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


@dataclass(frozen=True)
class Option:
    """One option of an analysis, declared once: the CLI option, the API keyword and its check derive from it.

    ``kind`` is ``int``, ``float``, ``str`` or ``bool``; a ``str`` option also takes what the
    analysis parses itself (a list, a range, a callable from Python); ``low``/``high`` bound numbers.
    """

    name: str
    kind: type
    default: Any = None
    help: str = ""
    low: float | None = None
    high: float | None = None

    @property
    def flag(self) -> str:
        """The command-line spelling: ``random_k`` is ``--random-k``."""
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """``value`` if it has this option's type and bounds, else a PlanError naming the option."""
        from resnet_probe.bounds import describe
        from resnet_probe.errors import PlanError

        if value is None or self.kind is str:
            return value
        numeric = self.kind in (int, float)
        wrong = isinstance(value, bool) and self.kind is not bool
        if wrong or not isinstance(value, (int, float) if self.kind is float else self.kind):
            raise PlanError(f"{self.name} {value!r}: expected {self.kind.__name__}")
        number = float(cast(float, value)) if numeric else 0.0
        if numeric and (number != number or (self.low is not None and number < self.low)
                        or (self.high is not None and number > self.high)):
            what = "a whole number" if self.kind is int else "a number"
            raise PlanError(f"{self.name} {value!r}: must be {what} with {describe(self.low, self.high)}")
        return value


#: the metric option of the analyses that score configurations (resnet_probe.metrics)
METRIC = Option(
    "metric", str, "auto",
    "auto (top1 for classifiers, loss for causal language models) | top1 | top5 (hits) | loss (cross-entropy, "
    "per sequence for a language model; lower is better) | next_token (a language model's share of next tokens "
    "predicted right per sequence; higher is better), or from Python a callable (outputs, targets) -> one "
    "value per example",
)


class Analysis(ABC):
    """One analysis, described once: name, options, result type, journal items, report, ``run``.

    ``options`` make the CLI command of a plugin (:mod:`resnet_probe.cli.generated`), are checked
    by ``rp.run`` before any work, and the built-in commands and ``rp.*`` functions are tested
    against them. ``journal_item`` is the schema of the items a resumable analysis journals
    (a pydantic model; None: any finite JSON). Its report is the module registered under its
    name in the entry-point group ``resnet_probe.reports`` (figures, tables and reading).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    result_type: ClassVar[type[Result]]
    options: ClassVar[tuple[Option, ...]] = ()
    journal_item: ClassVar[type[Any] | None] = None
    needs_data: ClassVar[bool] = True
    needs_weights: ClassVar[bool] = True
    needs_layer_outputs: ClassVar[bool] = False  # reads BN outputs: the runner must not fold BN into convs
    resumable: ClassVar[bool] = False  # journals finished pieces in ctx.journal, so --resume works
    batch_probe: ClassVar[bool] = False  # work grows with the images: the runner may time batch sizes on it

    @abstractmethod
    def run(self, ctx: RunContext, **options: Any) -> Result:
        """Compute the result; must leave the model untouched."""

    @classmethod
    def check_options(cls, given: dict[str, Any]) -> dict[str, Any]:
        """``given`` checked against :attr:`options` (unknown names, types, bounds), before any work."""
        from resnet_probe.errors import PlanError

        declared = {o.name: o for o in cls.options}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            valid = ", ".join(declared) or "none"
            raise PlanError(f"{cls.name}: unknown option {unknown[0]!r}; valid: {valid}")
        return {k: declared[k].check(v) for k, v in given.items()}
