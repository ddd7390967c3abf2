"""Checkpoint formats: our safetensors file, plain state dicts, akamaster's file, broken files."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from resnet_probe.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from resnet_probe.errors import CheckpointError
from resnet_probe.models.checkpoints import apply_state_dict, file_sha256, read_checkpoint, save_checkpoint
from resnet_probe.models.registry import get_entry


def _model(name: str = "resnet20", num_classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_entry(name).builder(num_classes=num_classes)


def _assert_one_line(exc: pytest.ExceptionInfo[BaseException]) -> None:
    assert "\n" not in str(exc.value)


def test_akamaster_fixture_reads_with_stripped_prefix(fixtures_dir: Path) -> None:
    data = read_checkpoint(fixtures_dir / "resnet20-12fca82f.th")
    assert data.format == "akamaster"
    assert data.sha256.startswith("12fca82f")
    assert data.sha256 == file_sha256(fixtures_dir / "resnet20-12fca82f.th")
    assert not any(k.startswith("module.") for k in data.state_dict)
    assert data.preprocessing == Preprocessing(IMAGENET_MEAN, IMAGENET_STD, None, "checkpoint")
    assert data.metadata["best_prec1"] == pytest.approx(91.78, abs=0.01)
    model = _model()
    apply_state_dict(model, data.state_dict, "fixture")  # strict: raises on any mismatch
    assert torch.equal(model.linear.weight, data.state_dict["linear.weight"])


def test_our_format_round_trip(tmp_path: Path) -> None:
    model = _model()
    with torch.no_grad():  # make buffers non-trivial so that they are checked too
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.num_batches_tracked.fill_(7)
    prep = Preprocessing((0.49, 0.48, 0.45), (0.25, 0.24, 0.26), 32, "dataset")
    history = [{"epoch": 1, "loss": 2.1, "acc": 0.31}, {"epoch": 2, "loss": 1.7, "acc": 0.42}]
    path = save_checkpoint(
        tmp_path / "sub" / "r20.safetensors",
        model,
        "zoo:resnet20",
        dataset="cifar10",
        num_classes=10,
        preprocessing=prep,
        accuracy=0.42,
        train_args={"epochs": 2, "lr": 0.1},
        history=history,
        extra={"seed": 3},
    )
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["r20.safetensors"]
    data = read_checkpoint(path)
    assert data.format == "resnet-probe"
    assert data.preprocessing == prep
    meta = data.metadata
    assert meta["format"] == 1 and meta["spec"] == "zoo:resnet20" and meta["dataset"] == "cifar10"
    assert meta["num_classes"] == 10 and meta["accuracy"] == 0.42 and meta["seed"] == 3
    assert meta["train_args"] == {"epochs": 2, "lr": 0.1} and meta["history"] == history
    assert meta["preprocessing"] == prep.to_dict()
    original = model.state_dict()
    assert data.state_dict.keys() == original.keys()
    for key, value in original.items():
        assert data.state_dict[key].dtype == value.dtype
        assert torch.equal(data.state_dict[key], value), key
    fresh = _model()
    apply_state_dict(fresh, data.state_dict, "round trip")
    for (k, a), b in zip(fresh.state_dict().items(), original.values(), strict=True):
        assert torch.equal(a, b), k


def test_save_is_atomic_over_an_existing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.safetensors"
    model = _model()
    save_checkpoint(path, model, "zoo:resnet20", dataset="cifar10", num_classes=10, preprocessing=None)
    before = path.read_bytes()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken)
    with pytest.raises(OSError):
        save_checkpoint(path, model, "zoo:resnet20", dataset="cifar10", num_classes=10, preprocessing=None)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind


def test_extra_metadata_cannot_redefine_core_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="spec"):
        save_checkpoint(
            tmp_path / "m.safetensors",
            _model(),
            "zoo:resnet20",
            dataset="cifar10",
            num_classes=10,
            preprocessing=None,
            extra={"spec": "zoo:resnet56"},
        )


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".th"])
def test_plain_torch_state_dict(tmp_path: Path, suffix: str) -> None:
    model = _model()
    path = tmp_path / f"plain{suffix}"
    torch.save(model.state_dict(), path)
    data = read_checkpoint(path)
    assert data.format == "state_dict" and data.metadata == {} and data.preprocessing is None
    apply_state_dict(_model(), data.state_dict, "plain")


def test_wrapped_and_dataparallel_state_dicts(tmp_path: Path) -> None:
    model = _model()
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"model": sd, "epoch": 12, "arch": "resnet20"}, tmp_path / "w.pt")
    data = read_checkpoint(tmp_path / "w.pt")
    assert data.metadata == {"epoch": 12, "arch": "resnet20"} and data.preprocessing is None
    fresh = _model()
    apply_state_dict(fresh, data.state_dict, "wrapped")
    assert torch.equal(fresh.conv1.weight, model.conv1.weight)


def test_plain_safetensors(tmp_path: Path) -> None:
    model = _model()
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    data = read_checkpoint(path)
    assert data.format == "safetensors" and data.metadata == {} and data.preprocessing is None
    apply_state_dict(_model(), data.state_dict, "plain safetensors")
    # the format is recognised by its header, not by its name
    renamed = tmp_path / "weights.bin"
    path.rename(renamed)
    assert read_checkpoint(renamed).format == "safetensors"


def test_wrong_architecture_names_the_keys(fixtures_dir: Path) -> None:
    data = read_checkpoint(fixtures_dir / "resnet20-12fca82f.th")
    with pytest.raises(CheckpointError) as exc:
        apply_state_dict(_model("resnet56"), data.state_dict, "checkpoint x.th does not fit zoo:resnet56")
    _assert_one_line(exc)
    msg = str(exc.value)
    assert msg.startswith("checkpoint x.th does not fit zoo:resnet56: missing layer1.3.")
    assert "more)" in msg


def test_shape_mismatch_and_unexpected_keys() -> None:
    sd = _model(num_classes=100).state_dict()
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as exc:
        apply_state_dict(_model(), sd, "ckpt")
    _assert_one_line(exc)
    msg = str(exc.value)
    assert "unexpected extra.weight" in msg
    assert "shape mismatch linear.weight (checkpoint (100, 64), model (10, 64))" in msg
    assert "missing" not in msg


def test_failed_load_leaves_model_untouched() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sd = {k: torch.zeros_like(v) for k, v in model.state_dict().items()}
    sd.pop("linear.bias")
    with pytest.raises(CheckpointError, match="missing linear.bias"):
        apply_state_dict(model, sd, "ckpt")
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_missing_file() -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint("/nonexistent/dir/model.th")


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.5, 0.99])
def test_truncated_akamaster_file(fixtures_dir: Path, tmp_path: Path, fraction: float) -> None:
    raw = (fixtures_dir / "resnet20-12fca82f.th").read_bytes()
    path = tmp_path / "cut.th"
    path.write_bytes(raw[: int(len(raw) * fraction)])
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(path)
    _assert_one_line(exc)


def test_truncated_zip_and_safetensors(tmp_path: Path) -> None:
    model = _model()
    torch.save(model.state_dict(), tmp_path / "full.pt")
    save_checkpoint(
        tmp_path / "full.safetensors",
        model,
        "zoo:resnet20",
        dataset="cifar10",
        num_classes=10,
        preprocessing=None,
    )
    for name in ("full.pt", "full.safetensors"):
        raw = (tmp_path / name).read_bytes()
        cut = tmp_path / f"cut-{name}"
        cut.write_bytes(raw[: len(raw) // 2])
        with pytest.raises(CheckpointError) as exc:
            read_checkpoint(cut)
        _assert_one_line(exc)


@pytest.mark.parametrize(
    "payload",
    [b"just some text, not a checkpoint", b"\x00" * 64],
)
def test_not_a_checkpoint(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(payload)
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(path)
    _assert_one_line(exc)


def test_tensor_free_objects_are_not_checkpoints(tmp_path: Path) -> None:
    torch.save({"a": [1, 2]}, tmp_path / "list.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    for name in ("list.pt", "tensor.pt"):
        with pytest.raises(CheckpointError, match="not a checkpoint"):
            read_checkpoint(tmp_path / name)


class _Hostile:
    """Unpickling this would run a command; weights_only must refuse it."""

    marker = ""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["raw-pickle", "torch-save"])
def test_hostile_pickle_is_refused(tmp_path: Path, how: str) -> None:
    marker = tmp_path / "PWNED"
    hostile = _Hostile()
    hostile.marker = str(marker)
    path = tmp_path / "evil.pt"
    if how == "raw-pickle":
        path.write_bytes(pickle.dumps(hostile))
    else:
        torch.save({"state_dict": _model().state_dict(), "payload": hostile}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(path)
    _assert_one_line(exc)
    assert "refused to load" in str(exc.value) and "weights_only=True" in str(exc.value)
    assert not marker.exists()


# --- weights that load but mean nothing; the weights' own digest ----------------------------


@pytest.mark.parametrize(
    ("poison", "fragment"),
    [
        (lambda sd: sd.update({"layer3.2.conv1.weight": sd["layer3.2.conv1.weight"] * float("nan")}),
         "NaN or Inf in layer3.2.conv1.weight; expected finite weights"),
        (lambda sd: sd.update({"bn1.running_var": torch.full_like(sd["bn1.running_var"], float("inf"))}),
         "NaN or Inf in bn1.running_var"),
        (lambda sd: sd.update({k: v.long() for k, v in sd.items() if v.is_floating_point()}),
         "non-floating weights: conv1.weight (torch.int64), bn1.weight (torch.int64), bn1.bias (torch.int64), ..."),
        (lambda sd: sd.update({"linear.bias": sd["linear.bias"] > 0}),
         "non-floating weights: linear.bias (torch.bool)"),
    ],
    ids=["nan", "inf-buffer", "int64", "bool"],
)
def test_meaningless_weights_are_refused(poison: object, fragment: str) -> None:
    from resnet_probe.models.checkpoints import check_weights

    model = _model()
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    poison(sd)  # type: ignore[operator]
    with pytest.raises(CheckpointError) as exc:
        check_weights(model, sd, "checkpoint x.pt")
    _assert_one_line(exc)
    assert str(exc.value).startswith("checkpoint x.pt holds ") and fragment in str(exc.value)
    check_weights(model, model.state_dict(), "fine")  # float16/32/64 and integer step counters pass
    check_weights(model, {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, "half")


def test_tensor_digest_ignores_the_file_format(fixtures_dir: Path, tmp_path: Path) -> None:
    from resnet_probe.models.checkpoints import tensors_sha256
    from resnet_probe.models.weights import PUBLISHED, identify

    th = read_checkpoint(fixtures_dir / "resnet20-12fca82f.th")
    save_file({k: v.contiguous() for k, v in th.state_dict.items()}, str(tmp_path / "copy.safetensors"))
    model = _model()
    apply_state_dict(model, th.state_dict, "fixture")
    torch.save(model.state_dict(), tmp_path / "resaved.pt")  # now with BatchNorm step counters
    digests = {tensors_sha256(read_checkpoint(p).state_dict)
               for p in (fixtures_dir / "resnet20-12fca82f.th", tmp_path / "copy.safetensors", tmp_path / "resaved.pt")}
    entry = PUBLISHED[("resnet20", "cifar10")]
    assert digests == {entry.tensors_sha256}
    copy = read_checkpoint(tmp_path / "copy.safetensors")
    assert copy.preprocessing is None  # the file alone does not say how it normalises...
    assert identify("resnet20", copy.sha256, lambda: tensors_sha256(copy.state_dict)) is entry  # ...the table does
    assert identify("resnet56", copy.sha256, lambda: tensors_sha256(copy.state_dict)) is None
    other = {k: v + 1 if v.is_floating_point() else v for k, v in th.state_dict.items()}
    assert identify("resnet20", "0" * 64, lambda: tensors_sha256(other)) is None


def test_every_shipped_file_has_its_tensor_digest() -> None:
    from resnet_probe.models.checkpoints import tensors_sha256
    from resnet_probe.models.weights import PUBLISHED

    for w in PUBLISHED.values():
        if w.path is not None:
            assert tensors_sha256(read_checkpoint(w.path).state_dict) == w.tensors_sha256, w.file_name
