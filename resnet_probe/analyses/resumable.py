"""Scoring many plans in journaled chunks, so an interrupted sweep resumes where it stopped.

Without a journal every plan goes through one :func:`score_plans` call (one pass over the
data, the most prefix sharing). With one, the plans not yet finished are scored
:data:`CHUNK` at a time, sorted so that each chunk still shares its prefixes, and every
finished plan is journaled under its key; plans the journal already holds are read back.
Scores are sums of per-batch integers and floats in batch order, so a plan scores the same
in any chunk: a resumed run gives the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Collection, Sequence

from resnet_probe.analyses.base import ProgressFactory, no_progress
from resnet_probe.data import DataSource
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.executor import Executor, Plan
from resnet_probe.journal import Journal
from resnet_probe.metrics import Metric
from resnet_probe.scoring import Score, Stopping, score_plans

CHUNK = 16  # plans per pass over the data when journaling


def score_resumable(
    executor: Executor,
    data: DataSource,
    plans: Sequence[Plan],
    keys: Sequence[Any],
    *,
    journal: Journal | None = None,
    batch_size: int = 256,
    preprocessing: Preprocessing | None = None,
    progress: ProgressFactory = no_progress,
    description: str = "scoring",
    chunk: int = CHUNK,
    stop: Stopping | None = None,
    always: Collection[int] = (),
    metric: Metric | str | None = None,
) -> list[Score]:
    """The score of every plan; ``keys[i]`` (JSON-able) names plan i in the journal.

    Plans with equal keys must be equal; each is scored once. ``stop`` and ``always`` (plan
    indices run on every image) as in :func:`score_plans`: a plan's stop depends on its own
    images only, so it stops at the same image in any chunk.

    Example:
        >>> score_resumable(ex, data, [Plan(), Plan.delete(3)], [[], [3]], journal=Journal(p, {}, True))
    """
    if len(keys) != len(plans):
        raise ValueError(f"{len(plans)} plans but {len(keys)} keys")
    ids = [json.dumps(k, sort_keys=True) for k in keys]
    first: dict[str, int] = {}
    for i, key_id in enumerate(ids):
        first.setdefault(key_id, i)
    found: dict[str, Score] = {}
    todo: list[int] = []
    for key_id, i in first.items():
        if journal is not None and journal.has(keys[i]):
            found[key_id] = Score(**journal.get(keys[i]))
        else:
            todo.append(i)
    n = executor.n_units
    if journal is None:
        chunks = [todo] if todo else []
    else:
        todo.sort(key=lambda i: plans[i].steps(n))  # neighbours share the longest prefixes
        chunks = [todo[s : s + chunk] for s in range(0, len(todo), chunk)]
    with progress(description, len(data) * len(chunks)) as advance:
        for part in chunks:
            scores = score_plans(
                executor, data, [plans[i] for i in part], batch_size=batch_size,
                preprocessing=preprocessing, progress=advance, stop=stop,
                always=[j for j, i in enumerate(part) if i in always], metric=metric,
            )
            for i, score in zip(part, scores, strict=True):
                found[ids[i]] = score
                if journal is not None:
                    journal.add(keys[i], dataclasses.asdict(score))
    return [found[key_id] for key_id in ids]
