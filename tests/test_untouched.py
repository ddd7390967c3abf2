"""Every analysis leaves the model as it found it: weights, buffers, modes, grads, hooks; also when it raises."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from torch import nn

from resnet_probe.analyses.base import Analysis, RunContext
from resnet_probe.data import load_data
from resnet_probe.data.source import TensorSource
from resnet_probe.executor import Executor
from resnet_probe.models.checkpoints import save_checkpoint
from resnet_probe.models.load import load_model
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.plugins import discover

# Tiny options per built-in analysis; a third-party plugin runs with its defaults.
TINY_OPTIONS: dict[str, dict[str, Any]] = {
    "lesion": {"random_k": "1:2", "samples": 2},
    "reorder": {"swaps": "1:2", "samples": 2},
    "gradients": {"samples": 2, "k": "0:3"},
}
HISTORY = [
    {"epoch": e, "iteration": 10 * e, "lr": 0.1, "train_loss": 1.0 / e, "train_error": 0.5 / e,
     "test_loss": 1.1 / e, "test_error": 0.6 / e, "seconds": 1.0}
    for e in (1, 2)
]
ANALYSES = [p for p in discover() if p.analysis is not None]
WITH_DATA = [p for p in ANALYSES if p.analysis is not None and p.analysis.needs_data]
_HOOK_DICTS = (
    "_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
    "_state_dict_hooks", "_load_state_dict_pre_hooks",
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ResNet-20 saved in our format with a training history (train-curves reads it)."""
    torch.manual_seed(0)
    model = load_model("zoo:resnet20", weights="random").model
    path = tmp_path_factory.mktemp("ckpt") / "resnet20.safetensors"
    return save_checkpoint(path, model, "zoo:resnet20", dataset="digits", num_classes=10,
                           preprocessing=None, history=HISTORY)


def _fresh(checkpoint: Path) -> tuple[LoadedModel, RunContext]:
    loaded = load_model("zoo:resnet20", checkpoint=checkpoint)
    loaded.model.train()  # analyses switch to eval inside; the user's mode must come back
    data = load_data("digits", limit=12)
    ctx = RunContext(loaded=loaded, executor=Executor(loaded.topology, "cpu"), data=data, batch_size=4, seed=3)
    return loaded, ctx


def _state(model: nn.Module) -> dict[str, Any]:
    return {
        "tensors": {k: v.detach().clone() for k, v in [*model.named_parameters(), *model.named_buffers()]},
        "training": {name: m.training for name, m in model.named_modules()},
        "requires_grad": {k: p.requires_grad for k, p in model.named_parameters()},
    }


def _assert_untouched(model: nn.Module, before: dict[str, Any]) -> None:
    after = _state(model)
    assert after["tensors"].keys() == before["tensors"].keys()
    for key, value in before["tensors"].items():
        now = after["tensors"][key]
        assert now.dtype == value.dtype and now.device == value.device, key
        assert torch.equal(now, value), f"{key} changed"
    assert after["training"] == before["training"]
    assert all(after["training"].values())  # still in train mode, as the user left it
    assert after["requires_grad"] == before["requires_grad"]
    assert all(p.grad is None for p in model.parameters())
    for name, module in model.named_modules():
        for attr in _HOOK_DICTS:
            assert not getattr(module, attr, {}), f"{attr} left on {name or 'model'}"
    from torch.nn.modules import module as nn_module

    assert not nn_module._global_forward_hooks and not nn_module._global_forward_pre_hooks
    assert not nn_module._global_backward_hooks


@pytest.mark.parametrize("plugin", ANALYSES, ids=[p.name for p in ANALYSES])
def test_analysis_leaves_the_model_untouched(plugin: Any, checkpoint: Path) -> None:
    loaded, ctx = _fresh(checkpoint)
    before = _state(loaded.model)
    analysis: Analysis = plugin.analysis()
    result = analysis.run(ctx, **TINY_OPTIONS.get(plugin.name, {}))
    assert isinstance(result, plugin.analysis.result_type)
    assert result.to_dict()  # it did real work
    _assert_untouched(loaded.model, before)


@pytest.mark.parametrize("plugin", WITH_DATA, ids=[p.name for p in WITH_DATA])
def test_analysis_that_fails_between_batches_leaves_the_model_untouched(
    plugin: Any, checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded, ctx = _fresh(checkpoint)
    before = _state(loaded.model)
    real = TensorSource.batches

    def failing(self: TensorSource, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for i, batch in enumerate(real(self, *args, **kwargs)):
            if i == 1:
                raise RuntimeError("disk gone after the first batch")
            yield batch

    monkeypatch.setattr(TensorSource, "batches", failing)
    with pytest.raises(RuntimeError, match="disk gone"):
        plugin.analysis().run(ctx, **TINY_OPTIONS.get(plugin.name, {}))
    _assert_untouched(loaded.model, before)


@pytest.mark.parametrize("plugin", WITH_DATA, ids=[p.name for p in WITH_DATA])
def test_analysis_that_fails_inside_a_forward_pass_leaves_the_model_untouched(
    plugin: Any, checkpoint: Path
) -> None:
    loaded, ctx = _fresh(checkpoint)
    before = _state(loaded.model)
    head = [m for m in loaded.model.modules() if isinstance(m, nn.Linear)][-1]
    calls = []

    def explode(_module: nn.Module, _inputs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("out of memory in the second forward")

    handle = head.register_forward_pre_hook(explode)
    try:
        with pytest.raises(RuntimeError, match="out of memory"):
            plugin.analysis().run(ctx, **TINY_OPTIONS.get(plugin.name, {}))
    finally:
        handle.remove()  # ours; any hook still there is the analysis's
    assert len(calls) == 2
    _assert_untouched(loaded.model, before)


def test_every_built_in_analysis_is_covered() -> None:
    names = {p.name for p in ANALYSES}
    assert {"evaluate", "lesion", "reorder", "paths", "gradients", "response-std", "train-curves"} <= names
