"""Building torchvision / timm models by name: names, preprocessing, offline errors; any model reaches the adapters."""

from __future__ import annotations

import socket
import urllib.error
from pathlib import Path
from typing import Any

import pytest
import torch
from torchvision import models

from resnet_probe.adapters import build_topology
from resnet_probe.errors import AdapterError, CheckpointError, OfflineError, UnknownModelError
from resnet_probe.models import hub as hub_models


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network and empty weight caches, whatever the machine has."""

    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(-2, "Name or service not known (test)")

    def no_url(*args: Any, **kwargs: Any) -> Any:
        raise urllib.error.URLError("Name or service not known (test)")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(torch.hub, "urlopen", no_url)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch"))
    try:
        import huggingface_hub.constants as hf
    except ImportError:
        return
    # Offline mode skips the hub's retry back-off (tens of seconds); the empty cache hides local copies.
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf"))


def assert_one_line_offline(exc: pytest.ExceptionInfo[OfflineError], spec: str) -> None:
    """The OfflineError contract: one line, names the model, points to --checkpoint."""
    message = str(exc.value)
    assert "\n" not in message
    assert spec in message and "--checkpoint PATH" in message and "offline?" in message


# -- torchvision ---------------------------------------------------------------------------------


def test_torchvision_names() -> None:
    names = hub_models.torchvision_names()
    assert names[:5] == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
    assert {"wide_resnet50_2", "resnext50_32x4d", "mobilenet_v2", "swin_t", "efficientnet_b0", "vgg16"} <= set(names)
    assert not any(n.startswith(("fasterrcnn", "deeplab", "r3d", "raft")) for n in names)  # classification only


def test_torchvision_random_init() -> None:
    model, prep = hub_models.build_torchvision("resnet18", pretrained=False, num_classes=10)
    assert isinstance(model, models.ResNet) and not model.training
    assert prep is None
    assert model.fc.out_features == 10
    assert build_topology(model).n_units == 8


def test_torchvision_wide_resnet_is_built() -> None:
    model, _ = hub_models.build_torchvision("wide_resnet50_2", pretrained=False)
    topo = build_topology(model)
    assert model.fc.out_features == 1000 and topo.n_units == 16
    assert topo.units[0].module.conv2.out_channels == 128  # twice resnet50's width


@pytest.mark.parametrize("name", ["resnet19", "mobilenet_v9", "fasterrcnn_resnet50_fpn"])
def test_torchvision_unknown_name(name: str) -> None:
    with pytest.raises(UnknownModelError) as exc:
        hub_models.build_torchvision(name, pretrained=False)
    message = str(exc.value)
    assert "\n" not in message and f"tv:{name}" in message and "resnet50" in message


def test_torchvision_pretrained_offline(offline: None) -> None:
    with pytest.raises(OfflineError) as exc:
        hub_models.build_torchvision("resnet50", pretrained=True)
    assert_one_line_offline(exc, "tv:resnet50")


def test_torchvision_pretrained_preprocessing(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.models import ResNet18_Weights

    state = models.resnet18().state_dict()
    monkeypatch.setattr(ResNet18_Weights, "get_state_dict", lambda self, *a, **k: state)
    model, prep = hub_models.build_torchvision("resnet18", pretrained=True)
    assert prep is not None
    assert prep.source == "torchvision" and prep.input_size == 224
    assert prep.mean == pytest.approx((0.485, 0.456, 0.406)) and prep.std == pytest.approx((0.229, 0.224, 0.225))
    assert torch.equal(model.conv1.weight, state["conv1.weight"]) and not model.training


def test_torchvision_bad_tag_and_class_count(offline: None) -> None:
    with pytest.raises(UnknownModelError, match="IMAGENET1K_V1"):
        hub_models.build_torchvision("resnet50", pretrained=True, tag="IMAGENET21K")
    with pytest.raises(CheckpointError, match="1000 classes"):
        hub_models.build_torchvision("resnet18", pretrained=True, num_classes=10)


# -- timm ----------------------------------------------------------------------------------------


def test_timm_random_init() -> None:
    model, prep = hub_models.build_timm("resnet26d", None, pretrained=False, num_classes=7)
    assert type(model).__name__ == "ResNet" and not model.training
    assert model.fc.out_features == 7
    assert (prep.input_size, prep.source) == (224, "timm")
    assert prep.mean == pytest.approx((0.485, 0.456, 0.406))
    assert build_topology(model).n_units == 8


@pytest.mark.parametrize(
    ("tag", "size", "mean"),
    [("a3_in1k", 160, (0.485, 0.456, 0.406)), ("ra4_e3600_r224_in1k", 224, (0.5, 0.5, 0.5))],
)
def test_timm_preprocessing_follows_tag(tag: str, size: int, mean: tuple[float, ...]) -> None:
    name = "resnet18" if tag == "a3_in1k" else "resnet18d"
    _, prep = hub_models.build_timm(name, tag, pretrained=False)
    assert prep.input_size == size and prep.mean == pytest.approx(mean)


@pytest.mark.parametrize("name", ["resnet19", "not_a_model"])
def test_timm_unknown_name(name: str) -> None:
    with pytest.raises(UnknownModelError) as exc:
        hub_models.build_timm(name, None, pretrained=False)
    message = str(exc.value)
    assert "\n" not in message and f"timm:{name}" in message and "resnet50" in message


@pytest.mark.parametrize(
    ("source", "name", "family"),
    [
        ("timm", "deit_tiny_patch16_224", "vit"),
        ("timm", "regnety_002", "fx"),
        ("timm", "efficientnet_b0", "fx"),
        ("timm", "resnest14d", "fx"),  # a timm ResNet of blocks the hand-written adapter does not read
        ("tv", "mobilenet_v2", "fx"),
        ("tv", "swin_t", "fx"),
    ],
)
def test_any_classification_model_reaches_the_adapters(source: str, name: str, family: str) -> None:
    if source == "timm":
        model, _ = hub_models.build_timm(name, None, pretrained=False)
    else:
        model, _ = hub_models.build_torchvision(name, pretrained=False)
    assert not model.training and build_topology(model).family == family


@pytest.mark.parametrize("source", ["timm", "tv"])
def test_a_model_without_residual_units_is_refused_by_the_adapters_in_one_line(source: str) -> None:
    if source == "timm":
        model, _ = hub_models.build_timm("mobilenetv1_100", None, pretrained=False)
    else:
        model, _ = hub_models.build_torchvision("shufflenet_v2_x0_5", pretrained=False)
    with pytest.raises(AdapterError) as exc:
        build_topology(model)
    assert "\n" not in str(exc.value) and "no addition of two computed values" in str(exc.value)


def test_timm_unknown_tag_and_missing_weights() -> None:
    with pytest.raises(UnknownModelError, match="a1_in1k"):
        hub_models.build_timm("resnet18", "bogus", pretrained=False)
    with pytest.raises(UnknownModelError, match="no pretrained weights"):
        hub_models.build_timm("seresnet18", None, pretrained=True)


@pytest.mark.parametrize("tag", [None, "tv_in1k"])
def test_timm_pretrained_offline(offline: None, tag: str | None) -> None:
    with pytest.raises(OfflineError) as exc:
        hub_models.build_timm("resnet18", tag, pretrained=True)
    assert_one_line_offline(exc, "timm:resnet18")


def test_timm_pretrained_loads_through_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm.models

    calls: list[str] = []
    monkeypatch.setattr(timm.models, "load_pretrained", lambda model, **kw: calls.append(model.pretrained_cfg["tag"]))
    model, prep = hub_models.build_timm("resnet50", "a3_in1k", pretrained=True)
    assert calls == ["a3_in1k"] and prep.input_size == 160 and not model.training


def test_timm_unreachable_hub_reads_only_its_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DNS for the Hub: huggingface_hub is put in offline mode (no retry back-off), then restored."""
    import huggingface_hub.constants as hf
    import timm.models

    def no_dns(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(-2, "Name or service not known (test)")

    seen: list[bool] = []
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(timm.models, "load_pretrained", lambda model, **kw: seen.append(hf.is_offline_mode()))
    hub_models.build_timm("resnet18", "a1_in1k", pretrained=True)
    assert seen == [True] and hf.HF_HUB_OFFLINE is False


def test_torchvision_tag_without_download_gives_its_preprocessing(offline: None) -> None:
    model, prep = hub_models.build_torchvision("resnet50", pretrained=False, tag="IMAGENET1K_V1")
    assert prep is not None and prep.input_size == 224 and model.fc.out_features == 1000
