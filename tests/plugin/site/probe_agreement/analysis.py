"""``agreement``: the share of images whose predicted class stays the same when one unit is deleted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from resnet_probe.analyses.base import Analysis, Option, RunContext
from resnet_probe.executor import Plan
from resnet_probe.results import Result
from resnet_probe.stats import wilson_interval


@dataclass(frozen=True)
class AgreementResult(Result):
    """Per deletable unit: images whose prediction is unchanged by deleting it, of ``n``, with a Wilson interval."""

    analysis: ClassVar[str] = "agreement"
    units: tuple[str, ...]
    agree: tuple[int, ...]
    n: int
    ci: tuple[tuple[float, float], ...] = ()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AgreementResult:
        return cls(tuple(d["units"]), tuple(d["agree"]), d["n"], tuple(tuple(c) for c in d["ci"]))


class AgreementAnalysis(Analysis):
    """Delete each unit alone and count the images whose predicted class does not change."""

    name = "agreement"
    description = "share of images whose prediction survives deleting each unit"
    result_type = AgreementResult
    resumable = True
    options = (Option("first", int, None, "only the first N deletable units", 1, 100_000),)

    def run(self, ctx: RunContext, first: int | None = None, **options: Any) -> AgreementResult:
        data = ctx.require_data(self.name)
        units = [u for u in ctx.loaded.topology.units if u.deletable][:first]
        agree: list[int] = []
        with ctx.progress("agreement", len(units)) as advance:
            for unit in units:
                if ctx.journal is not None and ctx.journal.has(unit.index):
                    agree.append(int(ctx.journal.get(unit.index)))
                    advance(1)
                    continue
                same = 0
                for x, _ in data.batches(ctx.batch_size, ctx.preprocessing, ctx.executor.device):
                    base, deleted = ctx.executor.run_plans(x, [Plan(), Plan.delete(unit.index)], _predictions)
                    same += int((base == deleted).sum())
                agree.append(same)
                if ctx.journal is not None:
                    ctx.journal.add(unit.index, same)
                advance(1)
        n = len(data)
        return AgreementResult(
            tuple(u.name for u in units), tuple(agree), n,
            tuple(wilson_interval(a, n, ctx.confidence) for a in agree),
        )


def _predictions(logits: Any) -> Any:
    return logits.argmax(dim=1)
