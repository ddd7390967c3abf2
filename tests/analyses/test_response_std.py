"""Layer-response std: the streaming float64 pass against an independent torch.cat computation."""

from __future__ import annotations

import dataclasses
import math
import statistics
from pathlib import Path

import pytest
import torch
from torch import nn

from resnet_probe.analyses import response_std as response_std_module
from resnet_probe.analyses.base import RunContext
from resnet_probe.analyses.response_std import (
    Moments,
    ResponseStdAnalysis,
    ResponseStdResult,
    response_std,
)
from resnet_probe.data import load_data
from resnet_probe.executor import Executor
from resnet_probe.models.load import load_model
from resnet_probe.results import RunRecord


@pytest.fixture(scope="module")
def trained(fixtures_dir: Path):
    """The akamaster ResNet-20 and the 846 CIFAR-10 test images."""
    loaded = load_model("zoo:resnet20", checkpoint=fixtures_dir / "resnet20-12fca82f.th")
    data = load_data("cifar10", fixtures_dir / "cifar10_test_first846.npz")
    return loaded, data


def _reference(loaded, data) -> dict[str, tuple[float, list[float]]]:
    """Overall and per-channel population std by plain BN hooks, torch.cat and float64."""
    bns = {"bn1": loaded.model.bn1}  # the stem's 3x3 conv: He et al. Fig. 7 counts it
    bns |= {f"{name}.bn{k}": getattr(block, f"bn{k}") for name, block in _blocks(loaded.model) for k in (1, 2)}
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in bns}
    handles = [
        bn.register_forward_hook(lambda _m, _i, out, name=name: outputs[name].append(out.detach().clone()))
        for name, bn in bns.items()
    ]
    try:
        loaded.model.eval()
        with torch.no_grad():
            for x, _ in data.batches(100, preprocessing=loaded.preprocessing):
                loaded.model(x)
    finally:
        for h in handles:
            h.remove()
    ref = {}
    for name, chunks in outputs.items():
        a = torch.cat(chunks).double()
        per_channel = a.transpose(0, 1).reshape(a.shape[1], -1).std(dim=1, unbiased=False)
        ref[name] = (float(a.std(unbiased=False)), per_channel.tolist())
    return ref


def _blocks(model: nn.Module):
    return [(f"layer{s}.{i}", b) for s in (1, 2, 3) for i, b in enumerate(getattr(model, f"layer{s}"))]


def test_streaming_std_equals_torch_cat_reference(trained) -> None:
    loaded, data = trained
    ref = _reference(loaded, data)
    layers, n = response_std(Executor(loaded.topology), data, batch_size=128, preprocessing=loaded.preprocessing)
    assert n == 846
    assert [name for _, name, _ in layers] == list(ref)  # network order
    assert len(layers) == 19  # as in He et al. Fig. 7 for the 20-layer nets: 1 + 3 x 3 x 2
    assert layers[0][:2] == ("stem", "bn1")
    for unit, name, moments in layers:
        assert name.startswith(unit + ".") or unit == "stem"
        want_std, want_channels = ref[name]
        assert moments.count == 846 * (
            32 * 32 if unit.startswith("layer1") or unit == "stem" else 16 * 16 if unit.startswith("layer2") else 8 * 8
        )
        assert moments.std() == pytest.approx(want_std, rel=1e-6)
        assert moments.channel_std() == pytest.approx(want_channels, rel=1e-6)
    # Trained BN responses are O(1), not degenerate.
    assert all(0.1 < m.std() < 10 for _, _, m in layers)


def test_batch_size_does_not_change_the_numbers(trained) -> None:
    loaded, data = trained
    data = load_data("cifar10", data.path, limit=300)
    ex = Executor(loaded.topology)
    runs = [response_std(ex, data, batch_size=b, preprocessing=loaded.preprocessing)[0] for b in (300, 64, 37)]
    first = [(m.std(), m.channel_std()) for _, _, m in runs[0]]
    for other in runs[1:]:
        for (s, ch), (_, _, m) in zip(first, other, strict=True):
            assert m.std() == pytest.approx(s, rel=1e-9)
            assert m.channel_std() == pytest.approx(ch, rel=1e-9)


def test_model_untouched_and_hooks_removed(trained) -> None:
    loaded, data = trained
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    flags = [m.training for m in loaded.model.modules()]
    ctx = RunContext(loaded=loaded, executor=Executor(loaded.topology), data=load_data("cifar10", data.path, limit=64))
    ResponseStdAnalysis().run(ctx)
    after = loaded.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in loaded.model.modules()] == flags
    assert all(not m._forward_hooks for m in loaded.model.modules())


def test_hooks_removed_when_the_reduction_raises(trained, monkeypatch) -> None:
    loaded, data = trained
    flags = [m.training for m in loaded.model.modules()]

    def boom(x):
        raise RuntimeError("reduction failed")

    # the reduction runs inside the capture, with every hook in place
    monkeypatch.setattr(response_std_module, "batch_moments", boom)
    ctx = RunContext(loaded=loaded, executor=Executor(loaded.topology), data=load_data("cifar10", data.path, limit=8))
    with pytest.raises(RuntimeError, match="reduction failed"):
        ResponseStdAnalysis().run(ctx)
    assert all(not m._forward_hooks for m in loaded.model.modules())
    assert [m.training for m in loaded.model.modules()] == flags


def test_analysis_measures_main_and_compared_models(trained) -> None:
    loaded, data = trained
    torch.manual_seed(0)
    plain = load_model("zoo:plain20", weights="random")
    small = load_data("cifar10", data.path, limit=40)
    ctx = RunContext(
        loaded=loaded,
        executor=Executor(loaded.topology),
        data=small,
        batch_size=16,
        compare=((plain, Executor(plain.topology)),),
    )
    result = ResponseStdAnalysis().run(ctx)
    assert [m.spec for m in result.models] == ["zoo:resnet20", "zoo:plain20"]
    assert [m.residual for m in result.models] == [True, False]
    assert [m.depth for m in result.models] == [20, 20]
    assert [m.accuracy for m in result.models] == [None, None]  # akamaster's file and random weights record none
    assert result.n_images == 40
    assert all(len(m.layers) == 19 for m in result.models)
    assert len(result.models[0].layers[-1].channel_std) == 64
    # The JSON round trip keeps every number.
    doc = result.to_dict()
    assert set(doc["models"][0]["layers"][0]) >= {"unit", "name", "std", "channel_std"}
    again = ResponseStdResult.from_dict(doc)
    assert again == result


def test_moments_merge_matches_numpy_population_std() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(50, 4, 3, 5, generator=gen, dtype=torch.float64) * 3 + 100  # offset tests cancellation
    m = Moments(4, torch.device("cpu"))
    for part in (x[:7], x[7:8], x[8:]):
        m.update(part)
    assert m.count == 50 * 15
    assert m.std() == pytest.approx(float(x.std(unbiased=False)), rel=1e-12)
    want = x.transpose(0, 1).reshape(4, -1).std(dim=1, unbiased=False).tolist()
    assert m.channel_std() == pytest.approx(want, rel=1e-12)
    assert math.isnan(Moments(2, torch.device("cpu")).std())


def test_report_renders_two_panels_and_reading(trained, tmp_path: Path) -> None:
    from resnet_probe.reports import render_report

    loaded, data = trained
    torch.manual_seed(0)
    plain = load_model("zoo:plain20", weights="random")
    small = load_data("cifar10", data.path, limit=32)
    ctx = RunContext(
        loaded=loaded, executor=Executor(loaded.topology), data=small, compare=((plain, Executor(plain.topology)),)
    )
    result = ResponseStdAnalysis().run(ctx)
    record = RunRecord("response-std", loaded.describe(), small.describe(), 0, "cpu", result.to_dict())
    html = render_report(record, result)
    assert html.count("<svg") == 1
    assert "network order" in html and "sorted (descending)" in html
    from resnet_probe.reports import content

    reading = content.reading(result, record)
    assert reading[0].startswith("Mean response std: resnet20 ")
    twin = reading[1]
    assert "plain twin plain20" in twin
    means = [statistics.fmean(m.stds) for m in result.models]
    assert f"{means[0]:.3f} vs {means[1]:.3f}" in twin
    summary = content.tables(result, record)[0]
    assert [row[0] for row in summary.rows] == ["resnet20", "plain20"]
    assert summary.rows[0][3] == round(means[0], 4)


@pytest.mark.parametrize(
    ("spec", "channels_last"),
    [("timm:convnext_tiny", True), ("timm:convnext_atto", False), ("timm:vit_tiny_patch16_224", True)],
)
def test_responses_are_per_channel_whatever_the_layout(spec: str, channels_last: bool) -> None:
    """ConvNeXt's NHWC LayerNorm and ViT's (batch, tokens, dim) keep channels last; conv_mlp ConvNeXts at dim 1."""
    loaded = load_model(spec, weights="random", num_classes=10)
    data = load_data(limit=6, image_size=64 if "convnext" in spec else 224)
    prep = dataclasses.replace(loaded.preprocessing, input_size=data.default_preprocessing.input_size)
    layers, n = response_std(Executor(loaded.topology), data, batch_size=4, preprocessing=prep)
    unit = loaded.topology.units[0]
    assert unit.responses_channels_last is channels_last
    ((name, module),) = unit.responses
    outputs: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach().double()))
    try:
        with torch.no_grad():
            for x, _ in data.batches(4, preprocessing=prep):
                loaded.model.eval()(x)
    finally:
        handle.remove()
    a = torch.cat(outputs)
    a = a if channels_last else a.movedim(1, -1)
    want = a.reshape(-1, a.shape[-1]).std(dim=0, unbiased=False)
    got = {layer_name: m for _, layer_name, m in layers}[name]
    assert n == 6 and len(got.channel_std()) == unit.out_channels == a.shape[-1]
    assert got.channel_std() == pytest.approx(want.tolist(), rel=1e-6)
    assert got.std() == pytest.approx(float(a.std(unbiased=False)), rel=1e-6)


NEW_FAMILIES = {  # zoo net -> (response layers with the stem's, the tensor taken)
    "densenet_bc100_k12": (49, "conv"),
    "vovnet_ese_cifar": (25, "norm"),
    "resnet20_exclusive_gating": (19, "norm"),
    "resnet20_relu_preact": (19, "norm"),
    "preact_resnet164": (55, "norm"),
    "preact_resnet20": (19, "conv"),
}


@pytest.mark.parametrize("name", list(NEW_FAMILIES))
def test_new_families_stream_the_responses_their_adapters_name(name: str) -> None:
    torch.manual_seed(0)
    loaded = load_model(f"zoo:{name}", weights="random")
    data = load_data("digits", limit=12)
    executor = Executor(loaded.topology)
    layers, n = response_std(executor, data, batch_size=5)
    count, tensor = NEW_FAMILIES[name]
    assert n == 12 and len(layers) == count
    assert response_std_module.response_tensor(loaded.topology) == tensor
    # the reference: plain hooks on the same modules over one batch of all 12 images, torch.cat-free
    modules = executor.response_modules()
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, out, k=k: outputs.__setitem__(k, out.double())) for k, m in modules
    ]
    try:
        with torch.no_grad():
            (x, _), *_ = data.batches(12)
            loaded.model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    for _, layer_name, moments in layers:
        want = outputs[layer_name]
        assert moments.std() == pytest.approx(float(want.std(unbiased=False)), rel=1e-9)
    if name == "densenet_bc100_k12":
        # a dense layer's response is its 3x3 conv's output: the k = 12 new maps
        first = loaded.topology.units[0]
        assert [n for n, _ in first.responses] == ["blocks.0.0.conv2"]
        assert outputs["blocks.0.0.conv2"].shape[1] == 12


def test_report_says_which_tensor_was_taken() -> None:
    from resnet_probe.reports import content, render

    render._load_content_modules()
    data = load_data("digits", limit=8)
    models = []
    for name in ("densenet40_k12", "preact_resnet20", "resnet20_const_scaling"):
        torch.manual_seed(0)
        loaded = load_model(f"zoo:{name}", weights="random")
        models.append(response_std_module.measure(loaded, Executor(loaded.topology), data, batch_size=8))
    result = ResponseStdResult(models=tuple(models), n_images=8)
    assert ResponseStdResult.from_dict(result.to_dict()) == result
    assert [m.tensor for m in result.models] == ["conv", "conv", "norm"]
    record = RunRecord("response-std", {"spec": "zoo:densenet40_k12"}, data.describe(), 0, "cpu", result.to_dict())
    reading = content.reading(result, record)
    (after_bn,) = [s for s in reading if s.startswith("Responses of resnet20_const_scaling")]
    assert "after its BN" in after_bn
    (raw,) = [s for s in reading if s.startswith("Responses of densenet40_k12, preact_resnet20")]
    assert "raw 3x3 conv outputs" in raw and "pre-activation units" in raw and "DenseNet layer" in raw
    summary = content.tables(result, record)[0]
    assert [row[-1] for row in summary.rows] == ["3x3 conv output", "3x3 conv output", "after BN"]


def test_the_plain_vs_residual_reading_rests_on_a_mann_whitney_test() -> None:
    from resnet_probe.reports import content
    from scipy.stats import mannwhitneyu

    from resnet_probe.analyses.response_std import LayerStd, ModelStd, ResponseStdResult
    from resnet_probe.results import RunRecord

    def model(spec: str, residual: bool, stds: list[float]) -> ModelStd:
        layers = tuple(LayerStd(f"u{i}", f"l{i}", s, (s,)) for i, s in enumerate(stds))
        return ModelStd(spec, "resnet" if residual else "plain", 20, residual, None, layers, tensor="norm")

    plain = [1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.4]
    apart = ResponseStdResult((model("zoo:plain20", False, plain), model("zoo:resnet20", True, [0.5] * 8)), 16)
    close = ResponseStdResult(
        (model("zoo:plain20", False, plain), model("zoo:resnet20", True, [s + 0.05 for s in plain])), 16
    )
    record = RunRecord("response-std", {"spec": "zoo:plain20"}, None, 0, "cpu", {})
    text = " ".join(content.reading(apart, record))
    p = mannwhitneyu([0.5] * 8, plain, alternative="two-sided").pvalue
    assert f"Mann–Whitney p = {p:.3g}" in text and "as He et al. 2015 (Fig. 7) report" in text
    assert "this run agrees" in text
    text = " ".join(content.reading(close, record))
    assert "do not differ significantly, so these nets neither support nor contradict" in text
