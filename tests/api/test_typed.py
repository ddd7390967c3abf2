"""Checked by mypy in CI (``nox -s typecheck``): the API's functions carry their result types.

Run as a test too, so that the calls it type-checks also work.
"""

from __future__ import annotations

import torch
from typing_extensions import assert_type

import resnet_probe as rp
from resnet_probe.analyses.evaluate import EvaluateResult
from resnet_probe.analyses.lesion import LesionResult
from resnet_probe.analyses.paths import PathsResult
from resnet_probe.analyses.prune import PruneResult
from resnet_probe.structure import Topology


def test_the_api_is_typed() -> None:
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    model = rp.load_model("resnet20", weights="random")
    assert_type(rp.lesion(model, (x, y), delete="3", metric="loss", batch_size=2), LesionResult)
    assert_type(rp.evaluate(model, (x, y)), EvaluateResult)
    assert_type(rp.paths(model), PathsResult)
    assert_type(rp.topology(model.model), Topology)
    assert_type(rp.Plan.delete(1), rp.Plan)
    assert_type(rp.prune(model, (x, y), remove=1, method="last", calibration=0.5), PruneResult)
