"""load_model: checkpoints, the trained-checkpoint cache, akamaster's weights, random init."""

from __future__ import annotations

import dataclasses
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_probe.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from resnet_probe.errors import CheckpointError, OfflineError, ProbeError
from resnet_probe.models import cache
from resnet_probe.models.checkpoints import save_checkpoint
from resnet_probe.models.load import load_model
from resnet_probe.models.spec import parse
from resnet_probe.models.weights import PUBLISHED

FIXTURE = "resnet20-12fca82f.th"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache, so no real download or training leaks in."""
    home = tmp_path / "home"
    monkeypatch.setenv("RESNET_PROBE_HOME", str(home))
    return home


def _offline(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    calls: list[dict[str, object]] = []

    def fail(url: str, **kwargs: object) -> None:
        calls.append({"url": url, **kwargs})
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    return calls


def test_akamaster_fixture_via_checkpoint(fixtures_dir: Path) -> None:
    lm = load_model("zoo:resnet20", checkpoint=fixtures_dir / FIXTURE)
    assert lm.spec == parse("zoo:resnet20")
    assert lm.num_classes == 10 and lm.topology.n_units == 9
    assert not lm.model.training
    assert lm.preprocessing == Preprocessing(IMAGENET_MEAN, IMAGENET_STD, None, "weights")
    assert lm.checkpoint_sha256 is not None and lm.checkpoint_sha256.startswith("12fca82f")
    assert lm.checkpoint == str(fixtures_dir / FIXTURE)
    assert lm.metadata["weights"] == "checkpoint"
    assert lm.metadata["best_prec1"] == pytest.approx(91.78, abs=0.01)
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = lm.model(x)
        assert torch.allclose(lm.topology.forward(x), expected, atol=1e-5)


def test_akamaster_fixture_accuracy_on_real_images(fixtures_dir: Path) -> None:
    """The fixture README: 776 of the first 846 CIFAR-10 test images are classified correctly."""
    lm = load_model("zoo:resnet20", checkpoint=fixtures_dir / FIXTURE)
    with np.load(fixtures_dir / "cifar10_test_first846.npz") as npz:
        images, labels = npz["images"], npz["labels"]
    assert lm.preprocessing is not None
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(lm.preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(lm.preprocessing.std).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = lm.model((x - mean) / std).argmax(1)
    assert int((pred == torch.from_numpy(labels)).sum()) == 776


def test_fixture_into_wrong_model_names_keys(fixtures_dir: Path) -> None:
    with pytest.raises(CheckpointError) as exc:
        load_model("zoo:resnet56", checkpoint=fixtures_dir / FIXTURE)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"checkpoint {FIXTURE} does not fit zoo:resnet56: missing layer1.3.")


def test_our_format_gives_classes_and_preprocessing(tmp_path: Path) -> None:
    source = load_model("zoo:resnet20", weights="random", num_classes=100)
    prep = Preprocessing((0.5, 0.5, 0.5), (0.2, 0.2, 0.2), None, "dataset")
    path = save_checkpoint(
        tmp_path / "c100.safetensors",
        source.model,
        source.spec,
        dataset="cifar100",
        num_classes=100,
        preprocessing=prep,
        accuracy=0.5,
    )
    lm = load_model("resnet20", checkpoint=path)
    assert lm.num_classes == 100 and lm.preprocessing == prep
    assert lm.metadata["weights"] == "checkpoint" and lm.metadata["dataset"] == "cifar100"
    assert lm.metadata["accuracy"] == 0.5
    for a, b in zip(lm.model.state_dict().values(), source.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="100 classes"):
        load_model("resnet20", checkpoint=path, num_classes=10)


def test_spec_in_metadata_must_match(tmp_path: Path) -> None:
    source = load_model("zoo:resnet20_b", weights="random")
    path = save_checkpoint(
        tmp_path / "b.safetensors",
        source.model,
        "zoo:resnet20_b",
        dataset="cifar10",
        num_classes=10,
        preprocessing=None,
    )
    with pytest.raises(CheckpointError) as exc:
        load_model("zoo:resnet20", checkpoint=path)
    assert "zoo:resnet20_b" in str(exc.value) and "not for zoo:resnet20" in str(exc.value)


def test_plain_state_dict_without_preprocessing(tmp_path: Path) -> None:
    source = load_model("zoo:plain20", weights="random")
    torch.save(source.model.state_dict(), tmp_path / "p.pth")
    lm = load_model("zoo:plain20", checkpoint=tmp_path / "p.pth")
    assert lm.preprocessing is None and lm.metadata == {
        "weights": "checkpoint",
        "checkpoint_format": "state_dict",
    }
    for a, b in zip(lm.model.parameters(), source.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_random_init_uses_global_rng() -> None:
    torch.manual_seed(1)
    a = load_model("zoo:resnet20", weights="random")
    torch.manual_seed(1)
    b = load_model("zoo:resnet20", weights="random")
    assert a.metadata == {"weights": "random"} and a.checkpoint is None and a.preprocessing is None
    assert torch.equal(a.model.conv1.weight, b.model.conv1.weight)
    assert not a.model.training


def test_checkpoint_with_explicit_weights_is_rejected(fixtures_dir: Path) -> None:
    with pytest.raises(ProbeError, match="exclude each other"):
        load_model("zoo:resnet20", checkpoint=fixtures_dir / FIXTURE, weights="random")
    with pytest.raises(ProbeError, match="unknown weights"):
        load_model("zoo:resnet20", weights="best")


def test_offline_download_is_one_line(monkeypatch: pytest.MonkeyPatch, _isolated_home: Path) -> None:
    calls = _offline(monkeypatch)
    with pytest.raises(OfflineError) as exc:
        load_model("zoo:resnet110")  # resnet20 and resnet56 ship with the package; resnet110 downloads
    msg = str(exc.value)
    assert "\n" not in msg
    assert "cannot download akamaster's resnet110 weights (offline?" in msg
    assert "--checkpoint PATH" in msg and "--random-init" in msg
    assert "`resnet-probe train --model resnet110 --dataset cifar10`" in msg
    assert calls[0]["url"] == (
        "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/resnet110-1d1ed7c2.th"
    )
    assert calls[0]["check_hash"] is True and calls[0]["weights_only"] is True
    assert Path(str(calls[0]["model_dir"])) == _isolated_home / "hub"


def test_no_known_weights_tells_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _offline(monkeypatch)
    for spec, dataset in (
        ("zoo:resnet56_b", None),
        ("zoo:resnet20", "cifar100"),
        ("zoo:preact_resnet20", None),
    ):
        with pytest.raises(CheckpointError) as exc:
            load_model(spec, dataset=dataset)
        msg = str(exc.value)
        assert "--checkpoint PATH" in msg and "--random-init" in msg and "resnet-probe train" in msg
    assert calls == []  # no download is attempted where none is published


def test_akamaster_weights_from_hub(
    fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch, _isolated_home: Path
) -> None:
    """A fake hub that serves the fixture, as torch.hub would after a download."""

    def serve(url: str, model_dir: str, file_name: str, **kwargs: object) -> dict[str, object]:
        assert url.endswith("/" + FIXTURE) and file_name == FIXTURE
        Path(model_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy(fixtures_dir / FIXTURE, Path(model_dir) / file_name)
        return torch.load(Path(model_dir) / file_name, weights_only=True, map_location="cpu")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", serve)
    key = ("resnet20", "cifar10")
    monkeypatch.setitem(PUBLISHED, key, dataclasses.replace(PUBLISHED[key], shipped=False))
    lm = load_model("zoo:resnet20")
    assert lm.metadata["weights"] == "akamaster" and lm.metadata["url"].endswith(FIXTURE)
    assert lm.checkpoint_sha256 is not None and lm.checkpoint_sha256.startswith("12fca82f")
    assert lm.checkpoint == str(_isolated_home / "hub" / FIXTURE)
    assert lm.preprocessing == Preprocessing(IMAGENET_MEAN, IMAGENET_STD, None, "weights")
    assert load_model("zoo:resnet20", weights="pretrained").metadata["weights"] == "akamaster"


def test_akamaster_file_names_carry_their_hash() -> None:
    assert {m for m, _ in PUBLISHED} == {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202"}
    for (name, dataset), w in PUBLISHED.items():
        stem, _, digest = w.file_name.removesuffix(".th").partition("-")
        assert stem == name and len(digest) == 8 and dataset == "cifar10" and w.sha256.startswith(digest)


def test_cache_home_respects_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNET_PROBE_HOME", str(tmp_path / "h"))
    assert cache.home() == tmp_path / "h"
    assert cache.trained_checkpoint_path("zoo:resnet56", "cifar100") == (
        tmp_path / "h" / "checkpoints" / "cifar100" / "resnet56.safetensors"
    )
    assert (
        cache.trained_checkpoint_path("tv:resnet50", "imagenet").name
        != cache.trained_checkpoint_path("timm:resnet50", "imagenet").name
    )
    assert cache.find_trained("zoo:resnet56", "cifar100") is None
    monkeypatch.delenv("RESNET_PROBE_HOME")
    assert cache.home() == Path.home() / ".cache" / "resnet-probe"


def test_cached_trained_checkpoint_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _offline(monkeypatch)
    trained = load_model("zoo:resnet32", weights="random")
    path = cache.trained_checkpoint_path("zoo:resnet32", "cifar10")
    save_checkpoint(
        path,
        trained.model,
        "zoo:resnet32",
        dataset="cifar10",
        num_classes=10,
        preprocessing=Preprocessing((0.49, 0.48, 0.45), (0.25, 0.24, 0.26)),
    )
    assert cache.find_trained("zoo:resnet32", "cifar10") == path
    lm = load_model("zoo:resnet32")
    assert calls == []  # the cache wins over akamaster's download
    assert lm.metadata["weights"] == "cache" and lm.checkpoint == str(path)
    assert lm.preprocessing is not None and lm.preprocessing.mean == (0.49, 0.48, 0.45)
    for a, b in zip(lm.model.parameters(), trained.model.parameters(), strict=True):
        assert torch.equal(a, b)
    # "pretrained" means published weights only, so it skips the cache
    with pytest.raises(OfflineError):
        load_model("zoo:resnet32", weights="pretrained")


@pytest.mark.network
def test_real_akamaster_download(_isolated_home: Path) -> None:
    lm = load_model("zoo:resnet20", weights="pretrained")
    assert lm.metadata["weights"] == "akamaster"
    assert lm.checkpoint_sha256 is not None and lm.checkpoint_sha256.startswith("12fca82f")
    assert (_isolated_home / "hub" / FIXTURE).is_file()
