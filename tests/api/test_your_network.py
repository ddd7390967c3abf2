"""Your network, your data: a module of your own class, a DataLoader or tensors, any metric."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import resnet_probe as rp
import resnet_probe.data
import resnet_probe.models
from resnet_probe.analyses.lesion import LesionResult
from resnet_probe.errors import ProbeError
from resnet_probe.executor import Executor
from resnet_probe.models.loaded import LoadedModel
from tests.api.own_resnet import MyResNet20

OWN = Path(__file__).with_name("own_resnet.py")


@pytest.fixture(scope="module")
def zoo() -> LoadedModel:
    return rp.load_model("resnet20")  # akamaster's shipped weights


@pytest.fixture(scope="module")
def sample(zoo) -> tuple[torch.Tensor, torch.Tensor]:
    """The 846 shipped CIFAR-10 images, normalised as akamaster's weights want: data already preprocessed."""
    xs, ys = zip(*rp.load_data("cifar10-sample").batches(1000, zoo.preprocessing), strict=True)
    return torch.cat(xs), torch.cat(ys)


@pytest.fixture(scope="module")
def own(zoo) -> MyResNet20:
    net = MyResNet20()
    net.load_state_dict(zoo.model.state_dict(), strict=True)  # same parameter names as akamaster's
    return net.eval()


@pytest.fixture(scope="module")
def reference() -> LesionResult:
    return rp.lesion("resnet20", "cifar10-sample")


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_own_class_and_dataloader_equal_the_zoo_net_on_the_shipped_images(own, sample, reference) -> None:
    before = _state(own)
    own.train()  # the user's mode must come back
    result = rp.lesion(own, DataLoader(TensorDataset(*sample), batch_size=100))
    assert (result.baseline.correct, result.baseline.n) == (776, 846)
    assert [c.deleted for c in result.configs] == [c.deleted for c in reference.configs]
    assert [c.correct for c in result.configs] == [c.correct for c in reference.configs]
    assert [c.names for c in result.configs] == [c.names for c in reference.configs]
    assert own.training and all(m.training for m in own.modules())
    assert all(torch.equal(before[k], v) for k, v in own.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in own.modules())
    assert result.run is not None and result.run.model["spec"] == "module:MyResNet20"
    assert result.run.data is not None and result.run.data["preprocessed"] is True
    assert result.run.model["preprocessing"]["source"] == "given"
    from resnet_probe.reports.content import full_reading

    assert full_reading(result, result.run)[0] == (
        "The model: module:MyResNet20, a module passed in with its weights as they were; the data: 846 examples "
        "of DataLoader (passed in, already preprocessed)."
    )


def test_a_tensor_pair_and_a_dataset_give_the_same_numbers(own, sample) -> None:
    x, y = sample[0][:200], sample[1][:200]
    pair = rp.lesion(own, (x, y), batch_size=64)
    dataset = rp.lesion(own, TensorDataset(x, y), batch_size=50)
    assert [c.correct for c in pair.configs] == [c.correct for c in dataset.configs]
    assert pair.baseline.hits == dataset.baseline.hits


def test_dict_batches_with_named_keys(own, sample) -> None:
    x, y = sample[0][:64], sample[1][:64]
    batches = [{"pixels": x[i : i + 32], "label": y[i : i + 32]} for i in (0, 32)]
    result = rp.evaluate(own, batches, inputs="pixels", targets="label")
    assert result.correct == int((own.eval()(x).argmax(1) == y).sum())
    with pytest.raises(ProbeError, match="inputs= and targets="):
        rp.evaluate(own, batches)


def test_loss_metric_gets_a_mean_with_interval_and_paired_sign_flip_tests(own, sample) -> None:
    x, y = sample[0][:128], sample[1][:128]
    result = rp.lesion(own, (x, y), metric="loss")
    expected = torch.nn.functional.cross_entropy(own.eval()(x), y).item()
    assert result.metric == "loss" and result.metric_kind == "loss" and not result.higher_is_better
    assert result.baseline.score == pytest.approx(expected, abs=1e-5)
    lo, hi = result.baseline.ci
    assert lo < result.baseline.score < hi
    # deleting the first downsampling unit (zero-pads half its channels) raises the loss, significantly
    worst = max(result.configs, key=lambda c: c.score)
    assert worst.score > result.baseline.score and worst.significant
    frame = result.to_frame()
    assert frame.loc[0, "loss"] == pytest.approx(expected, abs=1e-5)


def test_a_callable_metric_bool_is_a_hit_float_is_a_loss(own, sample) -> None:
    x, y = sample[0][:96], sample[1][:96]

    def top2(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (outputs.topk(2, dim=1).indices == targets[:, None]).any(1)

    def margin(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        true = outputs.gather(1, targets[:, None])[:, 0]
        return outputs.max(1).values - true  # 0 when right: a loss

    hits = rp.evaluate(own, (x, y), metric=top2)
    with torch.no_grad():
        logits = own.eval()(x)
    assert hits.metric == "top2" and hits.metric_kind == "hit"
    assert hits.correct == int(top2(logits, y).sum())
    loss = rp.lesion(own, (x, y), metric=margin, delete="3")
    assert loss.metric_kind == "loss"
    assert loss.baseline.score == pytest.approx(float(margin(logits, y).double().mean()), abs=1e-5)
    assert "margin" in loss.to_frame().columns


def test_timm_resnet18_with_random_weights_and_a_tensor_pair() -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    net = timm.create_model("resnet18", num_classes=10)
    x, y = torch.randn(8, 3, 64, 64), torch.randint(0, 10, (8,))
    result = rp.lesion(net, (x, y), metric="loss")
    assert result.baseline.n == 8 and len(result.configs) == 8
    plain = rp.lesion(net, (x, y))
    assert plain.baseline.correct == int((net.eval()(x).argmax(1) == y).sum())


class TinyLM(nn.Module):
    """A causal language model in miniature: embeddings, four pre-norm residual blocks, an output layer."""

    def __init__(self, vocab: int = 50, width: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(4))
        self.fcs = nn.ModuleList(nn.Linear(width, width) for _ in range(4))
        self.out = nn.Linear(width, vocab)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.emb(ids)
        for norm, fc in zip(self.norms, self.fcs, strict=True):
            h = h + fc(torch.tanh(norm(h)))
        return self.out(h)


def test_token_ids_and_a_language_model_default_to_the_per_sequence_token_loss() -> None:
    torch.manual_seed(0)
    lm, ids = TinyLM(), torch.randint(0, 50, (12, 10))
    result = rp.lesion(lm, ids)
    assert (result.metric, result.metric_kind, result.baseline.n) == ("loss", "loss", 12)
    with torch.no_grad():
        logits = lm.eval()(ids)
    per_sequence = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 50), ids[:, 1:].reshape(-1), reduction="none").view(12, 9).mean(1)
    assert result.baseline.score == pytest.approx(float(per_sequence.double().mean()), abs=1e-6)
    assert result.to_frame().loc[0, "loss"] == pytest.approx(result.baseline.score)
    assert len(result.configs) == 4
    # what does not speak language-model losses yet says so in one line instead of printing accuracies of 0
    with pytest.raises(ProbeError, match="top1 needs one class index per example"):
        rp.reorder(lm, ids, swaps="1", samples=2)
    with pytest.raises(ProbeError, match="gradient at the embeddings is not built yet"):
        rp.gradients(lm, ids, samples=2)


def test_units_names_the_residual_units_where_discovery_is_not_wanted(own, sample) -> None:
    x = sample[0][:16]
    topo = rp.topology(own, units=["layer1.0", "layer2.0", "layer3.0"])
    assert [u.name for u in topo.units] == ["layer1.0", "layer2.0", "layer3.0"]
    assert sorted(topo.transitions) == [1, 2]  # layer1.1-1.2 and layer2.1-2.2 run whole, between units
    torch.testing.assert_close(topo.forward(x), own.eval()(x))
    with pytest.raises(ProbeError, match="no submodule 'layer9.0'"):
        rp.topology(own, units=["layer9.0"])
    with pytest.raises(ProbeError, match="not its input plus a residual branch"):
        rp.topology(own, units=["layer1"])  # a stage holds three additions, not one


class Nested(nn.Module):
    """Two units whose residual branches each hold a residual addition of their own."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.inner = nn.ModuleList(nn.Conv2d(8, 8, 3, padding=1) for _ in range(4))
        self.head = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for i in (0, 2):
            a = torch.relu(self.inner[i](h))
            h = h + (a + self.inner[i + 1](a))  # the inner addition closes no unit
        return self.head(h.mean((2, 3)))


def test_a_unit_view_with_fewer_units_than_additions_says_so_in_the_reading() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(6, 3, 8, 8), torch.randint(0, 10, (6,))
    result = rp.lesion(Nested(), (x, y))
    assert result.run is not None and result.run.extra["unread_additions"] == 2
    from resnet_probe.reports.content import full_reading

    coverage = [s for s in full_reading(result, result.run) if s.startswith("Coverage")]
    assert coverage and "holds 4 residual additions but its unit view has 2 units" in coverage[0]


def test_topology_prints_and_renders(own) -> None:
    topo = rp.topology(own)
    text = str(topo)
    assert text.startswith("MyResNet20 (") and "stem -> 9 units -> head" in text
    assert "layer2.0" in text and "<td>layer2.0</td>" in topo._repr_html_()


def test_run_plans_shares_prefixes_and_equals_the_plain_forward(own, sample, zoo) -> None:
    x = sample[0][:32]
    base, without3 = rp.run_plans(own, x, [rp.Plan(), rp.Plan.delete(3)])
    torch.testing.assert_close(base, own.eval()(x))
    ex = Executor(zoo.topology)
    torch.testing.assert_close(without3, ex.forward(x, rp.Plan.delete(3)), atol=1e-4, rtol=1e-4)
    argmax = rp.run_plans(own, x, [rp.Plan(), rp.Plan.delete(0)], reduce=lambda z: z.argmax(1))
    assert argmax[0].shape == (32,)


def test_a_factory_file_and_a_checkpoint_on_the_cli(tmp_path: Path, reference) -> None:
    published = Path(resnet_probe.models.__file__).parent / "published" / "resnet20-12fca82f.th"
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "resnet_probe.cli.app", "lesion", "--model", f"{OWN}:make", "--checkpoint",
           str(published), "--dataset", "cifar10-sample", "--limit", "128", "--delete", "3", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "results.json").read_text())
    from resnet_probe.stats import unpack_bits

    first = unpack_bits(reference.baseline.hits, 846)[:128]  # the zoo net's hits on the same images
    assert doc["result"]["baseline"]["correct"] == int(first.sum())
    assert doc["model"]["spec"] == f"python:{OWN}:make"


def test_the_same_through_torch_export_save_the_api_and_the_cli(own, sample, reference, tmp_path: Path) -> None:
    path = tmp_path / "net.pt2"
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(own.eval(), (sample[0][:2],), dynamic_shapes=({0: batch},)), path)
    result = rp.lesion(str(path), DataLoader(TensorDataset(*sample), batch_size=128))
    assert result.baseline.correct == 776
    assert [c.correct for c in result.configs] == [c.correct for c in reference.configs]
    assert [u.name for u in result.units] == [u.name for u in reference.units]

    npz = Path(resnet_probe.data.__file__).parent / "sample" / "cifar10_test_first846.npz"
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "resnet_probe.cli.app", "lesion", "--model", str(path), "--data", str(npz),
           "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "results.json").read_text())
    assert doc["result"]["baseline"]["correct"] == 776
    assert [c["correct"] for c in doc["result"]["configs"]] == [c.correct for c in reference.configs]
    assert doc["model"]["preprocessing"]["from"] == "--mean/--std"
    assert doc["model"]["checkpoint_format"] == "torch.export"


# -- bad input: one ProbeError line, the model untouched ----------------------------------------------


class Raises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x[:, :, :1, :1] * 0 + torch.ones(5)  # shapes do not broadcast


class Flat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)  # (batch, 3, H, W): not logits


def _bad_metric_values(kind: str):
    def metric(outputs: torch.Tensor, targets: torch.Tensor) -> object:
        if kind == "raises":
            raise RuntimeError("boom")
        if kind == "length":
            return torch.zeros(outputs.shape[0] + 1)
        if kind == "nan":
            return torch.full((outputs.shape[0],), float("nan"))
        if kind == "int":
            return torch.zeros(outputs.shape[0], dtype=torch.int64)
        return [0.0] * outputs.shape[0]

    return metric


BAD_DATA = {
    "not pairs": ([torch.zeros(4, 3, 32, 32)], "yields a Tensor"),
    "one-shot": ((b for b in []), "read only once"),
    "a string of nothing": (42, "cannot read data from a int"),
    "targets out of range": ("targets_out_of_range", "has 19 classes but module:MyResNet20 predicts 10"),
    "targets out of range in a loader": ("loader_out_of_range", "outside \\[0, 10\\)"),
    "float targets": ("float_targets", "integer class indices"),
    "shuffling loader": ("shuffle", "shuffles"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_is_one_clear_error(case: str, own, sample) -> None:
    obj, message = BAD_DATA[case]
    x, y = sample[0][:8], sample[1][:8]
    if obj == "targets_out_of_range":
        obj = (x, y + 10)
    elif obj == "loader_out_of_range":
        obj = DataLoader(TensorDataset(x, y + 10), batch_size=4)
    elif obj == "float_targets":
        obj = (x, y.float())
    elif obj == "shuffle":
        obj = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    before = _state(own)
    with pytest.raises(ProbeError, match=message) as err:
        rp.lesion(own, obj)
    assert "\n" not in str(err.value) and "tensor(" not in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in own.state_dict().items())


@pytest.mark.parametrize("kind", ["raises", "length", "nan", "int", "list"])
def test_bad_metric_callables_are_one_clear_error(kind: str, own, sample) -> None:
    with pytest.raises(ProbeError, match="metric 'metric'") as err:
        rp.evaluate(own, (sample[0][:8], sample[1][:8]), metric=_bad_metric_values(kind))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("module, message", [(Raises(), "forward pass fails"), (Flat(), "expected logits")])
def test_bad_modules_are_one_clear_error(module: nn.Module, message: str, sample) -> None:
    with pytest.raises(ProbeError, match=message):
        rp.evaluate(module, (sample[0][:4], sample[1][:4]))


def test_an_unknown_metric_name_lists_the_valid_ones(own, sample) -> None:
    with pytest.raises(ProbeError, match="valid: top1, top5, loss"):
        rp.evaluate(own, (sample[0][:4], sample[1][:4]), metric="top3")


@pytest.mark.parametrize("spec, message", [
    ("missing.py:make", "does not exist"),
    (f"{OWN}:nothing", "defines no 'nothing'"),
    (f"{OWN}:Block", "fails"),  # Block() needs arguments
    ("json:dumps", "unknown model source"),
])
def test_bad_factories_are_one_clear_error(spec: str, message: str) -> None:
    with pytest.raises(ProbeError, match=message):
        rp.load_model(spec)


def test_a_factory_that_returns_no_module(tmp_path: Path) -> None:
    path = tmp_path / "nets.py"
    path.write_text("def make():\n    return 3\n")
    with pytest.raises(ProbeError, match="returns a int, not a torch.nn.Module"):
        rp.load_model(f"{path}:make")
