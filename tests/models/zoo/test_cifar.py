"""The CIFAR zoo: registry content, parameter counts (He et al. 2015 Table 6), state-dict names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from resnet_probe.models.registry import get_entry, list_models, register_model
from resnet_probe.models.zoo.cifar import CifarResNet, PadShortcut, PreActCifarResNet
from resnet_probe.structure import count_params

DEPTHS = (20, 32, 44, 56, 110, 1202)
UNITS_PER_STAGE = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18, 1202: 200}
PLANES = (16, 32, 64)

# He et al. 2015, Table 6 (option A), in millions.
TABLE6_M = {20: "0.27", 32: "0.46", 44: "0.66", 56: "0.85", 110: "1.7", 1202: "19.4"}


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """One intra-op thread: these tiny convs thrash with more when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def expected_params(n: int, option: str | None, preact: bool = False, classes: int = 10) -> int:
    """Parameter count worked out layer by layer, independently of the zoo code."""
    total = 3 * 16 * 9 + (0 if preact else 2 * 16)  # stem conv (+ BN for post-activation)
    cin = 16
    for s, c in enumerate(PLANES):
        for i in range(n):
            down = s > 0 and i == 0
            total += 9 * cin * c + 9 * c * c  # the two 3x3 convs
            total += (2 * cin + 2 * c) if preact else 4 * c  # their BNs
            if preact and down:
                total += cin * c  # 1x1 projection, no BN
            if option == "C" or (option == "B" and down):
                total += cin * c + 2 * c  # 1x1 projection + BN
            cin = c
    if preact:
        total += 2 * 64  # final BN
    return total + 64 * classes + classes


def build(name: str, num_classes: int = 10) -> Any:
    """A registered model with fresh random weights (Any: tests reach into its submodules)."""
    return get_entry(name).builder(num_classes=num_classes)


def _of_family(pattern: str, family: str) -> list[str]:
    return [n for n in list_models(pattern) if get_entry(n).family == family]


def test_list_resnets_in_natural_order() -> None:
    expected = [f"resnet{d}{suffix}" for d in DEPTHS for suffix in ("", "_b", "_c")]
    assert _of_family("resnet*", "cifar-resnet") == expected
    assert list_models("resnet*")[:4] == ["resnet20", "resnet20_b", "resnet20_bn_after_add", "resnet20_c"]


def test_list_plain_and_preact() -> None:
    assert list_models("plain*") == ["plain20", "plain32", "plain44", "plain56", "plain110"]
    assert _of_family("preact_*", "cifar-preact") == [f"preact_resnet{d}" for d in DEPTHS]
    assert len(list_models("*")) == 87


def test_families() -> None:
    assert {get_entry(n).family for n in list_models("resnet*")} == {
        "cifar-resnet", "cifar-resnet-variant", "cifar-bottleneck"
    }
    assert {get_entry(n).family for n in list_models("plain*")} == {"cifar-plain"}
    assert {get_entry(n).family for n in list_models("preact_*")} == {"cifar-preact", "cifar-preact-bottleneck"}
    assert get_entry("resnet110").description.startswith("ResNet-110")


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="resnet20"):
        register_model("cifar-resnet", units=9, params=269_722, name="resnet20")(get_entry("resnet20").builder)
    assert get_entry("resnet20").units == 9


HE_2015 = ("cifar-resnet", "cifar-plain", "cifar-preact")


@pytest.mark.parametrize("name", [n for n in list_models() if "1202" not in n and get_entry(n).family in HE_2015])
def test_param_count_every_model(name: str) -> None:
    model = build(name)
    n = model.n
    assert isinstance(model, (CifarResNet, PreActCifarResNet))
    assert model.depth == 6 * n + 2
    # A pre-act net's projection has no BN; expected_params adds it from ``preact`` alone.
    option = None if model.preact else model.shortcut_option
    assert count_params(model) == expected_params(n, option, model.preact)
    assert model.family == get_entry(name).family
    # the registry's declared counts, which `resnet-probe models` lists without building the net
    assert (get_entry(name).params, get_entry(name).units) == (count_params(model), 3 * n)


def test_param_count_resnet1202_variants() -> None:
    counts = {s: count_params(build(f"resnet1202{s}")) for s in ("", "_b", "_c")}
    assert counts == {s: get_entry(f"resnet1202{s}").params for s in counts}
    assert counts[""] == 19_421_274 == expected_params(200, "A")
    assert counts["_b"] == expected_params(200, "B")
    assert counts["_c"] == expected_params(200, "C")


def test_param_counts_match_table6() -> None:
    for depth in DEPTHS:
        count = count_params(build(f"resnet{depth}"))
        assert count == expected_params(UNITS_PER_STAGE[depth], "A")
        digits = 2 if count < 1_000_000 else 1
        assert f"{count / 1e6:.{digits}f}" == TABLE6_M[depth], depth


def test_exact_param_counts() -> None:
    assert count_params(build("resnet20")) == 269_722
    assert count_params(build("resnet56")) == 853_018
    assert count_params(build("resnet110")) == 1_727_962
    # Plain nets have the same layers; option B adds two 1x1 projections with BN.
    assert count_params(build("plain56")) == 853_018
    assert count_params(build("resnet20_b")) == 269_722 + (16 * 32 + 64) + (32 * 64 + 128)
    assert count_params(build("resnet20", num_classes=100)) == 269_722 + 90 * 65


def akamaster_keys(n: int) -> list[str]:
    """State-dict keys of akamaster/pytorch_resnet_cifar10's option-A ResNet."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight"] + [f"bn1.{k}" for k in bn]
    for s in (1, 2, 3):
        for i in range(n):
            p = f"layer{s}.{i}"
            keys += [f"{p}.conv1.weight"] + [f"{p}.bn1.{k}" for k in bn]
            keys += [f"{p}.conv2.weight"] + [f"{p}.bn2.{k}" for k in bn]
    return keys + ["linear.weight", "linear.bias"]


def test_option_a_state_dict_matches_akamaster() -> None:
    for depth in (20, 56):
        model = build(f"resnet{depth}")
        assert list(model.state_dict()) == akamaster_keys(UNITS_PER_STAGE[depth])
        # A strict load of a state dict with exactly those names succeeds.
        other = build(f"resnet{depth}")
        other.load_state_dict(model.state_dict(), strict=True)


def test_option_b_and_c_shortcut_names() -> None:
    keys_b = [k for k in build("resnet20_b").state_dict() if "shortcut" in k]
    assert sorted({k.split(".shortcut")[0] for k in keys_b}) == ["layer2.0", "layer3.0"]
    assert "layer2.0.shortcut.0.weight" in keys_b and "layer2.0.shortcut.1.running_var" in keys_b
    keys_c = {k.split(".shortcut")[0] for k in build("resnet20_c").state_dict() if "shortcut" in k}
    assert len(keys_c) == 9


def test_model_knows_its_kind() -> None:
    assert (build("resnet20").shortcut_option, build("resnet20").preact) == ("A", False)
    assert build("resnet32_b").shortcut_option == "B"
    assert build("resnet32_c").shortcut_option == "C"
    assert build("plain20").shortcut_option is None
    assert build("plain20").layer2[0].shortcut is None
    assert build("preact_resnet20").preact is True


def test_pad_shortcut_zero_pads_half_the_channels() -> None:
    x = torch.randn(2, 16, 32, 32)
    y = PadShortcut(32)(x)
    assert y.shape == (2, 32, 16, 16)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert not y[:, :8].any() and not y[:, 24:].any()
    assert list(PadShortcut(32).parameters()) == []


def test_kaiming_init() -> None:
    torch.manual_seed(0)
    model = build("resnet56")
    w = model.layer3[0].conv2.weight
    fan_in = 64 * 9
    assert abs(w.std().item() / (2 / fan_in) ** 0.5 - 1) < 0.02


@pytest.mark.parametrize("name", ["resnet20", "resnet20_b", "plain20", "preact_resnet20"])
def test_forward_shape_and_backward(name: str) -> None:
    model = build(name, num_classes=100)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 100)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_option_raises() -> None:
    with pytest.raises(ValueError, match="shortcut option"):
        CifarResNet(1, option="D")


def load_akamaster_resnet20(fixtures_dir: Path) -> CifarResNet:
    """The real akamaster ResNet-20 checkpoint, DataParallel prefix stripped, loaded strictly."""
    checkpoint = torch.load(fixtures_dir / "resnet20-12fca82f.th", map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v for k, v in checkpoint["state_dict"].items()}
    model = get_entry("resnet20").builder()
    assert isinstance(model, CifarResNet)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model


def cifar_fixture_batch(fixtures_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The 846 real CIFAR-10 test images, ImageNet-normalised as the checkpoint expects."""
    data = np.load(fixtures_dir / "cifar10_test_first846.npz")
    x = torch.from_numpy(data["images"]).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std, torch.from_numpy(data["labels"])


def test_real_akamaster_checkpoint_loads_strictly_and_classifies(fixtures_dir: Path) -> None:
    model = load_akamaster_resnet20(fixtures_dir)
    x, labels = cifar_fixture_batch(fixtures_dir)
    with torch.no_grad():
        correct = int((model(x).argmax(1) == labels).sum())
    assert correct == 776  # 91.73 % on these 846 images, as measured independently
