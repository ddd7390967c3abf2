"""Data sources: the real CIFAR-10 fixture, embedded digits, npz errors, folders, CIFAR roots."""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from resnet_probe.data import DATASETS, DataSource, TensorSource, load_data, pad_crop_flip
from resnet_probe.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from resnet_probe.errors import DataError

IMAGENET = Preprocessing(IMAGENET_MEAN, IMAGENET_STD)


@pytest.fixture(scope="module")
def cifar_npz(fixtures_dir: Path) -> Path:
    return fixtures_dir / "cifar10_test_first846.npz"


def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _one_line_error(match: str, **kwargs: object) -> str:
    with pytest.raises(DataError, match=match) as e:
        load_data(**kwargs)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# --- the real fixture -------------------------------------------------------------------


def test_fixture_npz_contents(cifar_npz: Path) -> None:
    src = load_data("cifar10", cifar_npz)
    assert isinstance(src, DataSource)
    assert len(src) == 846
    assert src.num_classes == 10
    assert src.classes[3] == "cat" and src.classes[8] == "ship"
    assert src.image_size == 32
    assert src.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert src.default_preprocessing.mean == (0.4914, 0.4822, 0.4465)
    assert src.describe() == {
        "dataset": "cifar10",
        "split": "test",
        "n": 846,
        "num_classes": 10,
        "path": str(cifar_npz),
    }


def test_fixture_batches_normalised_by_hand(cifar_npz: Path) -> None:
    src = load_data(data=cifar_npz)
    batches = list(src.batches(100, IMAGENET))
    assert len(batches) == 9
    assert [len(y) for _, y in batches] == [100] * 8 + [46]
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape == (100, 3, 32, 32)
    assert y.dtype == torch.int64 and y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    raw = np.load(cifar_npz)["images"][0].astype(np.float64) / 255.0  # (32, 32, 3)
    manual = (raw - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    expected = torch.from_numpy(manual.transpose(2, 0, 1))
    assert torch.allclose(x[0].double(), expected, atol=1e-6, rtol=0)
    # all images come out once, in order
    assert torch.equal(torch.cat([y for _, y in batches]), src.labels)


def test_fixture_limit_keeps_first(cifar_npz: Path) -> None:
    full = load_data("cifar10", cifar_npz)
    src = load_data("cifar10", cifar_npz, limit=10)
    assert len(src) == 10
    assert torch.equal(src.images, full.images[:10])
    assert len(load_data(data=cifar_npz, limit=5000)) == 846


def test_npz_without_dataset_uses_own_statistics(cifar_npz: Path) -> None:
    src = load_data(data=cifar_npz)
    assert src.name == "npz:cifar10_test_first846.npz"
    assert src.num_classes == 10 and src.classes[0] == "0"
    x = torch.cat([x for x, _ in src.batches(256)])
    assert x.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-3


def test_resize_to_preprocessing_input_size(cifar_npz: Path) -> None:
    src = load_data(data=cifar_npz, limit=4)
    x, _ = next(src.batches(4, Preprocessing(IMAGENET_MEAN, IMAGENET_STD, input_size=64)))
    assert x.shape == (4, 3, 64, 64)
    bigger = load_data(data=cifar_npz, limit=4, image_size=48)
    assert next(bigger.batches(4))[0].shape == (4, 3, 48, 48)


# --- embedded digits --------------------------------------------------------------------


def test_digits_default_split() -> None:
    test, train = load_data(), load_data(split="train")
    assert test.name == "digits" and test.split == "test"
    assert (len(test), len(train)) == (500, 1297)
    assert test.num_classes == train.num_classes == 10
    assert test.images.shape[1:] == (3, 32, 32) and test.images.dtype == torch.uint8
    assert torch.equal(test.images[:, 0], test.images[:, 1])
    assert int(test.images.max()) == 255 and int(test.images.min()) == 0
    total = torch.bincount(torch.cat([test.labels, train.labels]))
    assert torch.bincount(test.labels).tolist() == pytest.approx(
        (total * 500 / 1797).tolist(), abs=1
    )  # stratified


def test_digits_split_fixed_and_disjoint() -> None:
    a, b = load_data("digits"), load_data("digits")
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    train = load_data("digits", split="train")
    as_bytes = lambda s: {img.numpy().tobytes() for img in s.images}  # noqa: E731
    test_set, train_set = as_bytes(a), as_bytes(train)
    assert not test_set & train_set
    assert len(test_set | train_set) == 1797


def test_digits_statistics_match_train_split() -> None:
    train = load_data("digits", split="train")
    prep = train.default_preprocessing
    assert load_data().default_preprocessing == prep
    assert prep.mean[0] == pytest.approx(train.images.double().mean().item() / 255, abs=1e-9)
    x = torch.cat([x for x, _ in train.batches(512)])
    assert x.mean().item() == pytest.approx(0, abs=1e-4)
    assert x.std().item() == pytest.approx(1, abs=1e-3)


def test_digits_refuses_a_path(cifar_npz: Path) -> None:
    _one_line_error("built in", dataset="digits", data=cifar_npz)


# --- augmentation and shuffling ---------------------------------------------------------


def _all_batches(src: DataSource, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*src.batches(64, **kwargs), strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_augment_reproducible_and_seeded(cifar_npz: Path) -> None:
    src = load_data(data=cifar_npz, limit=200)
    plain, _ = _all_batches(src)
    a, _ = _all_batches(src, augment=True, seed=1)
    b, _ = _all_batches(src, augment=True, seed=1)
    c, _ = _all_batches(src, augment=True, seed=2)
    assert a.shape == plain.shape
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, plain)


def test_pad_crop_flip_is_a_crop_of_the_padded_image() -> None:
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = pad_crop_flip(x, torch.Generator().manual_seed(3), pad=2)
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    flipped = 0
    for i in range(len(x)):
        crops = [padded[i, :, r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
        plain_hit = any(torch.equal(out[i], crop) for crop in crops)
        flip_hit = any(torch.equal(out[i], crop.flip(-1)) for crop in crops)
        assert plain_hit or flip_hit
        flipped += flip_hit and not plain_hit
    assert 0 < flipped < len(x)


def test_shuffle_permutes_reproducibly(cifar_npz: Path) -> None:
    src = load_data(data=cifar_npz, limit=300)
    _, y1 = _all_batches(src, shuffle=True, seed=5)
    _, y2 = _all_batches(src, shuffle=True, seed=5)
    _, y3 = _all_batches(src, shuffle=True, seed=6)
    assert torch.equal(y1, y2) and not torch.equal(y1, y3)
    assert not torch.equal(y1, src.labels)
    assert torch.equal(y1.sort().values, src.labels.sort().values)


# --- errors -----------------------------------------------------------------------------


def test_npz_wrong_key(tmp_path: Path) -> None:
    path = _save_npz(tmp_path / "bad.npz", x=np.zeros((2, 32, 32, 3), np.uint8), labels=np.zeros(2, np.int64))
    msg = _one_line_error("lacks images", data=path)
    assert "expected 'images' uint8 (N, H, W, 3)" in msg


def test_npz_wrong_dtype_and_shape(tmp_path: Path) -> None:
    labels = np.zeros(2, np.int64)
    path = _save_npz(tmp_path / "f.npz", images=np.zeros((2, 32, 32, 3), np.float32), labels=labels)
    _one_line_error(r"'images' is float32 .*expected uint8 \(N, H, W, 3\)", data=path)
    path = _save_npz(tmp_path / "chw.npz", images=np.zeros((2, 3, 32, 32), np.uint8), labels=labels)
    _one_line_error(r"\(2, 3, 32, 32\); expected uint8 \(N, H, W, 3\)", data=path)
    path = _save_npz(tmp_path / "fl.npz", images=np.zeros((2, 32, 32, 3), np.uint8), labels=np.zeros(2))
    _one_line_error("'labels' is float64", data=path)


def test_npz_length_mismatch(tmp_path: Path) -> None:
    path = _save_npz(
        tmp_path / "n.npz", images=np.zeros((3, 8, 8, 3), np.uint8), labels=np.zeros(2, np.int64)
    )
    _one_line_error("3 images but 2 labels", data=path)


def test_npz_label_out_of_range(tmp_path: Path) -> None:
    images = np.zeros((4, 32, 32, 3), np.uint8)
    path = _save_npz(tmp_path / "r.npz", images=images, labels=np.array([0, 10, 3, 10]))
    msg = _one_line_error(r"outside \[0, 10\)", dataset="cifar10", data=path)
    assert "e.g. 10" in msg and "cifar10" in msg
    # without a named data set the labels decide
    assert load_data(data=path).num_classes == 11
    assert load_data("cifar100", path).num_classes == 100
    path = _save_npz(tmp_path / "neg.npz", images=images, labels=np.array([0, -1, 3, 2]))
    _one_line_error("e.g. -1", data=path)


def test_not_an_npz(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hi")
    _one_line_error("not an .npz or .npy file", data=tmp_path / "x.txt")
    (tmp_path / "y.npz").write_text("not a zip")
    _one_line_error("cannot read", data=tmp_path / "y.npz")


def test_bad_arguments(tmp_path: Path) -> None:
    msg = _one_line_error("does not exist", data=tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in msg and "CIFAR root" in msg and "image folder" in msg
    msg = _one_line_error("unknown dataset 'mnist'", dataset="mnist")
    assert all(name in msg for name in DATASETS)
    _one_line_error("limit must be at least 1", limit=0)
    _one_line_error("unknown split 'val'", split="val")
    _one_line_error("imagenet needs --data", dataset="imagenet")
    with pytest.raises(DataError, match="batch size"):
        next(load_data(limit=3).batches(0))


def test_empty_and_unrecognised_folders(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = _one_line_error("is empty", data=empty)
    assert "CIFAR root" in msg
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "a.png")
    _one_line_error("no class sub-folders", data=flat)
    imageless = tmp_path / "imageless"
    (imageless / "cat").mkdir(parents=True)
    (imageless / "cat" / "notes.txt").write_text("x")
    _one_line_error("image folder", data=imageless)


def test_tensor_source_validates() -> None:
    prep = Preprocessing((0.5,) * 3, (0.5,) * 3)
    kwargs = dict(
        name="t", split="test", num_classes=2, classes=("a", "b"), image_size=4, default_preprocessing=prep
    )
    with pytest.raises(DataError, match="uint8"):
        TensorSource(**kwargs, images=torch.zeros(2, 3, 4, 4), labels=torch.zeros(2, dtype=torch.int64))
    with pytest.raises(DataError, match="outside"):
        TensorSource(**kwargs, images=torch.zeros(2, 3, 4, 4, dtype=torch.uint8), labels=torch.tensor([0, 2]))
    src = TensorSource(
        **kwargs, images=torch.zeros(2, 3, 4, 4, dtype=torch.uint8), labels=torch.tensor([0, 1])
    )
    with pytest.raises(DataError, match="channels"):
        next(src.batches(2, Preprocessing((0.5,), (0.5,))))


# --- image folders ----------------------------------------------------------------------

RED = (255, 0, 0)


def _image_folder(root: Path, classes: list[str], per_class: int = 3) -> Path:
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            # different sizes and aspect ratios: resize + centre crop must make them agree
            Image.new("RGB", (40 + 10 * i, 30 + 7 * k), RED).save(root / name / f"{i}.png")
    return root


def test_image_folder_loads_resized_and_cropped(tmp_path: Path) -> None:
    src = load_data(data=_image_folder(tmp_path / "pets", ["cat", "dog"]))
    assert src.name == "folder:pets" and src.image_size == 0
    assert (len(src), src.num_classes, src.classes) == (6, 2, ("cat", "dog"))
    x, y = next(src.batches(4))
    assert x.shape == (4, 3, 224, 224) and x.dtype == torch.float32
    assert y.tolist() == [0, 0, 0, 1]
    red = (torch.tensor([1.0, 0.0, 0.0]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x, red.view(1, 3, 1, 1).expand_as(x), atol=1e-5)
    x, _ = next(src.batches(6, Preprocessing(IMAGENET_MEAN, IMAGENET_STD, input_size=40), workers=1))
    assert x.shape == (6, 3, 40, 40)


def test_image_folder_augment_and_shuffle_reproducible(tmp_path: Path) -> None:
    src = load_data(data=_image_folder(tmp_path / "pets", ["cat", "dog"]), image_size=16)
    runs = [list(src.batches(3, shuffle=True, augment=True, seed=s)) for s in (0, 0)]
    for (xa, ya), (xb, yb) in zip(*runs, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_image_folder_limit_takes_every_class(tmp_path: Path) -> None:
    src = load_data(data=_image_folder(tmp_path / "abc", ["a", "b", "c"]), limit=4)
    assert sorted(label for _, label in src.samples) == [0, 0, 1, 2]


def test_wordnet_folder_gets_imagenet_labels(tmp_path: Path) -> None:
    pytest.importorskip("timm")
    root = _image_folder(tmp_path / "val", ["n01443537", "n01440764"], per_class=1)
    src = load_data(data=root)  # WordNet ids: recognised as ImageNet
    assert (src.name, src.num_classes, len(src)) == ("imagenet", 1000, 2)
    assert src.classes[:2] == ("n01440764", "n01443537")
    assert [label for _, label in src.samples] == [0, 1]
    assert src.default_preprocessing.input_size == 224


def test_imagenet_folder_without_wordnet_ids(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "pets", ["cat", "dog"], per_class=1)
    _one_line_error("not named by WordNet id", dataset="imagenet", data=root)


# --- CIFAR roots ------------------------------------------------------------------------


def _cifar10_root(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """A torchvision-layout CIFAR-10 root holding the given images as every batch."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    entry = {"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1), "labels": labels.tolist()}
    for name in ["test_batch"] + [f"data_batch_{i}" for i in range(1, 6)]:
        (folder / name).write_bytes(pickle.dumps(entry))
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": classes}))
    return root


@pytest.fixture
def cifar_root(tmp_path: Path, cifar_npz: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import torchvision.datasets.cifar

    # the files are ours, not the official ones: skip torchvision's md5 checks
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    f = np.load(cifar_npz)
    return _cifar10_root(tmp_path / "root", f["images"][:50], f["labels"][:50])


def test_cifar_root_through_torchvision(cifar_root: Path, cifar_npz: Path) -> None:
    src = load_data(data=cifar_root, limit=20)
    assert (src.name, src.num_classes, len(src), src.path) == ("cifar10", 10, 20, str(cifar_root))
    assert src.classes[3] == "cat"
    ref = load_data(data=cifar_npz, limit=20)
    assert torch.equal(src.images, ref.images) and torch.equal(src.labels, ref.labels)
    # the batches folder itself is accepted too
    assert len(load_data("cifar10", cifar_root / "cifar-10-batches-py", split="train")) == 5 * 50


def test_cifar_from_home(cifar_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = cifar_root.parent / "home"
    (home / "data").mkdir(parents=True)
    (cifar_root / "cifar-10-batches-py").rename(home / "data" / "cifar-10-batches-py")
    monkeypatch.setenv("RESNET_PROBE_HOME", str(home))
    assert len(load_data("cifar10")) == 50


def test_cifar_missing_and_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    monkeypatch.setenv("RESNET_PROBE_HOME", str(tmp_path))
    msg = _one_line_error("CIFAR-100 not found under", dataset="cifar100")
    assert "pass --download or --data PATH" in msg and str(tmp_path) in msg

    def offline(self: object) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    _one_line_error(r"could not download CIFAR-10 .*\(offline\?\)", dataset="cifar10", download=True)


@pytest.mark.gpu
def test_batches_on_cuda(cifar_npz: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    src = load_data(data=cifar_npz, limit=8)
    x, y = next(src.batches(8, device="cuda", augment=True, seed=4))
    assert x.is_cuda and y.is_cuda
    cpu, _ = next(src.batches(8, augment=True, seed=4))
    assert torch.allclose(x.cpu(), cpu, atol=1e-6)


# --- shards (torchrun ranks) ------------------------------------------------------------


def _interleave(shards: list[list[tuple[torch.Tensor, torch.Tensor]]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batch j of the whole comes from rank j % world: put the shards back in that order."""
    world = len(shards)
    total = sum(len(s) for s in shards)
    return [shards[j % world][j // world] for j in range(total)]


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("shuffle", [False, True])
def test_shards_of_a_tensor_source_partition_its_batches(cifar_npz: Path, world: int, shuffle: bool) -> None:
    src = load_data(data=cifar_npz, limit=70)
    whole = list(src.batches(16, shuffle=shuffle, seed=3))  # 5 batches, the last of 6
    shards = [list(src.batches(16, shuffle=shuffle, seed=3, shard=(r, world))) for r in range(world)]
    assert [len(s) for s in shards] == [len(range(r, 5, world)) for r in range(world)]
    for (xa, ya), (xb, yb) in zip(whole, _interleave(shards), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_shards_of_an_image_folder_partition_its_batches(tmp_path: Path) -> None:
    src = load_data(data=_image_folder(tmp_path / "abc", ["a", "b", "c"]), image_size=8)
    whole = list(src.batches(2, shuffle=True, seed=1))  # 9 images: 5 batches
    shards = [list(src.batches(2, shuffle=True, seed=1, shard=(r, 2))) for r in range(2)]
    assert [len(s) for s in shards] == [3, 2]
    for (xa, ya), (xb, yb) in zip(whole, _interleave(shards), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_bad_shards_refused(cifar_npz: Path) -> None:
    src = load_data(data=cifar_npz, limit=8)
    with pytest.raises(ValueError, match="rank"):
        next(src.batches(4, shard=(2, 2)))
    with pytest.raises(ValueError, match="augmented"):
        next(src.batches(4, augment=True, shard=(0, 2)))


def test_folder_workers_kept_by_the_source(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "ab", ["a", "b"])
    src = load_data(data=root, image_size=8, workers=2)
    assert src.workers == 2
    ours = [y for _, y in src.batches(4)]
    inline = [y for _, y in load_data(data=root, image_size=8).batches(4)]
    assert [t.tolist() for t in ours] == [t.tolist() for t in inline] == [[0, 0, 0, 1], [1, 1]]
    _one_line_error("workers must be 0 or more", data=root, workers=-1)


# --- the validating readers ---------------------------------------------------------------


def test_npz_statistics_are_the_whole_files_whatever_the_limit(cifar_npz: Path) -> None:
    from resnet_probe.data.source import channel_stats

    full = load_data(data=cifar_npz)
    mean, std = channel_stats(full.images)
    assert full.default_preprocessing.mean == pytest.approx(mean, abs=1e-12)
    assert full.default_preprocessing.std == pytest.approx(std, abs=1e-12)
    some = load_data(data=cifar_npz, limit=10)
    assert len(some) == 10 and some.default_preprocessing == full.default_preprocessing
    assert torch.equal(some.images, full.images[:10]) and torch.equal(some.labels, full.labels[:10])


def test_npz_in_fortran_order_or_big_endian_reads_the_same(tmp_path: Path, cifar_npz: Path) -> None:
    with np.load(cifar_npz) as f:
        images, labels = f["images"][:12], f["labels"][:12]
    _save_npz(tmp_path / "f.npz", images=np.asfortranarray(images), labels=labels.astype(">i4"))
    c, fortran = load_data("cifar10", cifar_npz, limit=12), load_data("cifar10", tmp_path / "f.npz", limit=5)
    assert torch.equal(fortran.images, c.images[:5]) and torch.equal(fortran.labels, c.labels[:5])


def test_npz_sizes_checked_against_the_header_before_reading(tmp_path: Path) -> None:
    import io
    import zipfile

    def npy(shape: tuple[int, ...], descr: str, payload: bytes) -> bytes:
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
        return buf.getvalue() + payload

    # a well-formed archive whose header claims 9000 images: it holds the bytes of 4
    with zipfile.ZipFile(tmp_path / "lies.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("images.npy", npy((9000, 8, 8, 3), "|u1", bytes(4 * 192)))
        zf.writestr("labels.npy", npy((9000,), "<i8", bytes(4 * 8)))
    msg = _one_line_error("truncated or corrupt", data=tmp_path / "lies.npz")
    assert "'images' claims uint8 (9000, 8, 8, 3) (1.7 MB) but the archive holds 768 bytes of it" in msg


def test_npz_labels_wider_than_int64_are_named_as_they_are(tmp_path: Path) -> None:
    path = _save_npz(tmp_path / "u.npz", images=np.zeros((2, 8, 8, 3), np.uint8),
                     labels=np.array([1, 2**64 - 1], np.uint64))
    msg = _one_line_error("18446744073709551615", data=path)
    assert "-1" not in msg and "below 100000" in msg
    assert load_data(data=_save_npz(tmp_path / "w.npz", images=np.zeros((2, 8, 8, 3), np.uint8),
                                    labels=np.array([1, 12], np.uint64))).num_classes == 13


def test_available_memory_is_known_here() -> None:
    from resnet_probe.data.npz import available_memory

    free = available_memory()
    assert free is None or free > 0


def test_image_folder_names_an_undecodable_image(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "pets", ["cat", "dog"], per_class=2)
    (root / "dog" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature, then nothing
    src = load_data(data=root)
    for workers in (0, 1):
        with pytest.raises(DataError) as e:
            list(src.batches(2, workers=workers))
        msg = str(e.value)
        assert "\n" not in msg and f"cannot decode {root / 'dog' / '9.png'} (" in msg and "repair or remove" in msg
