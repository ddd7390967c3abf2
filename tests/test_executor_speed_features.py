"""The executor's speed options compute what the plain executor computes.

Stacked configurations, channels_last, bf16 autocast and torch.compile are checked for
correctness only (never timed): same per-plan numbers as the plain run, the user's model
untouched. The CUDA defaults (stacking and channels_last on) run under ``-m gpu``.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from resnet_probe.analyses.lesion import random_sets
from resnet_probe.analyses.reorder import random_orders
from resnet_probe.analyses.response_std import response_std
from resnet_probe.data import load_data
from resnet_probe.data.source import TensorSource
from resnet_probe.errors import PlanError
from resnet_probe.executor import STACK_ELEMENTS, Executor, Plan
from resnet_probe.models.load import load_model
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.scoring import score_plans
from resnet_probe.structure import Topology

MODELS = ("resnet20", "resnet20_b", "plain20", "preact_resnet20")
# bf16 keeps 8 bits of mantissa. Measured on the trained ResNet-20 and all 846 fixture images:
# logits (up to 40 in size) move by at most 0.32, 2 predictions flip, 778 correct against 776.
BF16_LOGIT_TOL = 0.5
BF16_ACCURACY_TOL = 0.01


def _loaded(name: str) -> LoadedModel:
    torch.manual_seed(0)
    lm = load_model(f"zoo:{name}", weights="random")
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # running statistics away from (0, 1), so a skipped BN would show
        for m in lm.model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
    return lm


def _plans(topology: Topology) -> list[Plan]:
    """A mix of every kind of plan: baseline, sweep, random sets, reordered networks."""
    deletable = [u.index for u in topology.units if u.deletable]
    plans = [Plan()] + [Plan.delete(i) for i in deletable]
    plans += [Plan.delete(*s) for _, s in random_sets(topology, (2, 4), 3, seed=0)]
    plans += [Plan(order=o) for _, o in random_orders(topology, (1, 3), 2, seed=0)]
    plans += [Plan(frozenset(deletable[:2]), o) for _, o in random_orders(topology, (2, 2), 1, seed=1)]
    return plans


@pytest.fixture(scope="module")
def x() -> Tensor:
    return torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def _params(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same_model(model: nn.Module, before: dict[str, Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), k
        assert after[k].is_contiguous(), f"{k} changed memory format"


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("width", [2, 3, 64])
def test_stacked_configurations_give_the_unstacked_numbers(name: str, width: int, x: Tensor) -> None:
    lm = _loaded(name)
    plans = _plans(lm.topology)
    plain = Executor(lm.topology, stack=1).run_plans(x, plans, lambda z: z)
    stacked = Executor(lm.topology, stack=width).run_plans(x, plans, lambda z: z)
    assert len(stacked) == len(plans)
    for a, b in zip(plain, stacked, strict=True):
        assert a.shape == b.shape == (5, 10)
        # Per-sample convolutions: bit-identical on the CPU in practice; 1e-6 is the contract.
        assert torch.allclose(a, b, rtol=0, atol=1e-6), float((a - b).abs().max())


def test_stacking_runs_each_step_once_per_position(x: Tensor) -> None:
    """A stacked sweep runs at most two calls per position (deleted or not), not one per branch."""
    lm = _loaded("resnet20")
    n = lm.topology.n_units
    plans = [Plan()] + [Plan.delete(i) for i in range(n)]
    calls = {}
    for width in (1, len(plans)):
        ex = Executor(lm.topology, stack=width)
        seen: list[int] = []
        original = ex._step

        def counting(h: Tensor, pos: int, unit: int, deleted: bool, original=original, seen=seen) -> Tensor:
            seen.append(int(h.shape[0]))
            return original(h, pos, unit, deleted)

        ex._step = counting  # type: ignore[method-assign]
        ex.run_plans(x, plans, lambda z: z)
        calls[width] = seen
    # Unstacked: the trie's steps one at a time; n = 9 gives 9 + (8 + 7 + ... + 0) + 9 = 54.
    assert len(calls[1]) == n + n * (n - 1) // 2 + n
    assert set(calls[1]) == {5}
    # Stacked: at position p the p deleted-earlier branches and the spine share one call, the
    # branch deleting p is the other; the last batch holds every finished branch.
    assert len(calls[len(plans)]) == 2 * n
    assert max(calls[len(plans)]) == 5 * n


def test_stacking_through_score_plans_gives_identical_scores(x: Tensor) -> None:
    lm = _loaded("resnet20")
    data = load_data(limit=40)
    plans = _plans(lm.topology)
    plain = score_plans(Executor(lm.topology, stack=1), data, plans, batch_size=16)
    stacked = score_plans(Executor(lm.topology, stack=8), data, plans, batch_size=16)
    assert [s.correct for s in plain] == [s.correct for s in stacked]
    assert [s.n for s in stacked] == [40] * len(plans)
    assert max(abs(a.loss_sum - b.loss_sum) for a, b in zip(plain, stacked, strict=True)) <= 1e-4


def test_stack_width_is_automatic_per_device(x: Tensor) -> None:
    lm = _loaded("resnet20")
    assert Executor(lm.topology).stack_width(x) == 1  # off on the CPU
    assert Executor(lm.topology, stack=7).stack_width(x) == 7
    assert STACK_ELEMENTS // (256 * 3 * 32 * 32) == 21  # what auto gives a CIFAR batch of 256 on CUDA


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "4"])
def test_bad_stack_width_is_a_plan_error(bad: object) -> None:
    lm = _loaded("resnet20")
    with pytest.raises(PlanError, match="stack"):
        Executor(lm.topology, stack=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["resnet20", "resnet20_b", "preact_resnet20"])
def test_channels_last_gives_the_same_numbers_and_leaves_the_model_alone(name: str, x: Tensor) -> None:
    lm = _loaded(name)
    before = _params(lm.model)
    plans = _plans(lm.topology)
    plain = Executor(lm.topology).run_plans(x, plans, lambda z: z)
    ex = Executor(lm.topology, channels_last=True)
    assert ex.channels_last and ex.topology.model is not lm.model  # a private NHWC copy
    conv = next(m for m in ex.topology.model.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    nhwc = ex.run_plans(x, plans, lambda z: z)
    for a, b in zip(plain, nhwc, strict=True):
        # another convolution kernel: float32 rounding in another order, ~1e-6 relative
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5), float((a - b).abs().max())
    y = torch.arange(5) % 10
    routes = (torch.arange(5 * lm.topology.n_units).reshape(5, -1) % 3 == 0).float()
    g_plain = Executor(lm.topology).routed_input_grad_norms(x, y, routes)
    g_nhwc = ex.routed_input_grad_norms(x, y, routes)
    assert torch.allclose(g_plain, g_nhwc, rtol=1e-5, atol=1e-7)
    _same_model(lm.model, before)


def test_channels_last_is_off_on_the_cpu_by_default() -> None:
    lm = _loaded("resnet20")
    ex = Executor(lm.topology)
    assert not ex.channels_last
    assert ex.topology is lm.topology  # no copy on the plain CPU path


def test_bf16_autocast_stays_within_the_documented_tolerance(fixtures_dir) -> None:
    """The first 64 fixture images: bf16 convolutions are emulated (25x slower) on a CPU without AVX-512."""
    lm = load_model("zoo:resnet20", checkpoint=fixtures_dir / "resnet20-12fca82f.th")
    data = load_data(data=fixtures_dir / "cifar10_test_first846.npz", limit=64)
    x, y = next(data.batches(64, preprocessing=lm.preprocessing))
    plans = [Plan(), Plan.delete(3)]
    fp32 = Executor(lm.topology).run_plans(x, plans, lambda z: z)
    bf16 = Executor(lm.topology, precision="bf16").run_plans(x, plans, lambda z: z)
    for ref, low in zip(fp32, bf16, strict=True):
        assert low.dtype == torch.bfloat16
        diff = float((low.float() - ref).abs().max())
        assert 0 < diff <= BF16_LOGIT_TOL  # it does run in bf16, and stays close
        hits = [int((z.float().argmax(1) == y).sum()) for z in (ref, low)]
        assert abs(hits[0] - hits[1]) / 64 <= BF16_ACCURACY_TOL + 1 / 64
        losses = [float(nn.functional.cross_entropy(z.float(), y)) for z in (ref, low)]
        assert abs(losses[0] - losses[1]) <= 0.02


def test_eager_backend_compile_gives_the_same_numbers(x: Tensor) -> None:
    """The compile wiring through dynamo's eager backend: seconds, where inductor takes minutes."""
    lm = _loaded("resnet20")
    before = _params(lm.model)
    plans = _plans(lm.topology)[:8]
    plain = Executor(lm.topology)
    compiled = Executor(lm.topology, compile="eager")
    assert compiled.compile_backend == "eager"
    assert compiled.topology.units[0].residual is not lm.topology.units[0].residual
    for a, b in zip(plain.run_plans(x, plans, lambda z: z), compiled.run_plans(x, plans, lambda z: z), strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-5)
    y = torch.arange(5) % 10
    routes = (torch.arange(5 * lm.topology.n_units).reshape(5, -1) % 2 == 0).float()
    assert torch.allclose(
        plain.routed_input_grad_norms(x, y, routes), compiled.routed_input_grad_norms(x, y, routes), rtol=1e-5
    )
    same_std = [
        (m.std(), n.std())
        for (_, _, m), (_, _, n) in zip(
            response_std(plain, load_data(limit=16), batch_size=8)[0],
            response_std(compiled, load_data(limit=16), batch_size=8)[0],
            strict=True,
        )
    ]
    assert len(same_std) == 19 and all(abs(a - b) <= 1e-6 * a for a, b in same_std)  # hooks see compiled units
    _same_model(lm.model, before)


@pytest.mark.slow
def test_inductor_compile_gives_the_same_numbers(x: Tensor) -> None:
    """Inductor itself: slow on the CPU (about a minute of C++ compilation for ResNet-20)."""
    lm = _loaded("resnet20")
    plans = _plans(lm.topology)[:4]
    plain = Executor(lm.topology).run_plans(x, plans, lambda z: z)
    compiled = Executor(lm.topology, compile=True).run_plans(x, plans, lambda z: z)
    for a, b in zip(plain, compiled, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-4)


@pytest.mark.parametrize("bad", ["no-such-backend", 3])
def test_bad_compile_option_is_a_plan_error(bad: object) -> None:
    lm = _loaded("resnet20")
    with pytest.raises(PlanError, match="compile"):
        Executor(lm.topology, compile=bad)  # type: ignore[arg-type]


# --- CUDA: the defaults there are stacking and channels_last on; run with `nox -s gpu`. ---


def _synthetic(n: int) -> TensorSource:
    gen = torch.Generator().manual_seed(3)
    return TensorSource(
        name="synthetic", split="test", num_classes=10, classes=tuple("abcdefghij"), image_size=32,
        default_preprocessing=load_data(limit=1).default_preprocessing,
        images=torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen),
        labels=torch.randint(0, 10, (n,), generator=gen),
    )


@pytest.mark.gpu
def test_cuda_defaults_stack_and_go_channels_last_with_cpu_numbers(x: Tensor, monkeypatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # TF32 would round convolutions to 10 bits
    lm = _loaded("resnet20")
    before = _params(lm.model)
    plans = _plans(lm.topology)
    cpu = Executor(lm.topology).run_plans(x, plans, lambda z: z)
    ex = Executor(lm.topology, "cuda")
    assert ex.channels_last and ex.stack_width(x) > 1
    gpu = ex.run_plans(x, plans, lambda z: z.cpu())
    for a, b in zip(cpu, gpu, strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-4)
    _same_model(lm.model, before)
    assert next(lm.model.parameters()).device.type == "cpu"


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cuda_autocast_scores_close_to_fp32(precision: str) -> None:
    lm = _loaded("resnet20")
    data = _synthetic(256)
    plans = _plans(lm.topology)
    fp32 = score_plans(Executor(lm.topology, "cuda"), data, plans, batch_size=64)
    low = score_plans(Executor(lm.topology, "cuda", precision), data, plans, batch_size=64)
    for a, b in zip(fp32, low, strict=True):
        assert abs(a.accuracy - b.accuracy) <= 0.05


@pytest.mark.gpu
@pytest.mark.parametrize("shuffle", [False, True])
def test_device_resident_batches_equal_cpu_batches(shuffle: bool) -> None:
    from resnet_probe.data.source import fits_on_device

    data = _synthetic(300)
    assert fits_on_device(data.images, torch.device("cuda"))
    for (xc, yc), (xg, yg) in zip(
        data.batches(64, shuffle=shuffle, seed=4), data.batches(64, device="cuda", shuffle=shuffle, seed=4),
        strict=True,
    ):
        assert xg.device.type == "cuda" and yg.device.type == "cuda"
        assert torch.equal(yc, yg.cpu())
        assert torch.allclose(xc, xg.cpu(), rtol=0, atol=1e-6)
