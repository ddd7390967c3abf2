"""Bad input never gives a traceback: exit 2, one line naming the value and what is allowed, nothing written."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_probe.models import registry
from resnet_probe.models.checkpoints import save_checkpoint
from resnet_probe.models.load import load_model
from resnet_probe.models.zoo.cifar import CifarResNet

from .helpers import run_cli

TINY = ("--random-init", "--dataset", "digits", "--limit", "8", "--device", "cpu", "--batch-size", "8")
DIGITS = ("--dataset", "digits", "--limit", "8", "--device", "cpu")  # for --checkpoint cases: no --random-init
R20 = ("--model", "resnet20")
DATA = ("eval", *R20, "--random-init", "--data")  # followed by the bad --data path
CKPT = ("eval", *R20, *DIGITS, "--checkpoint")  # followed by the bad --checkpoint path


class _Hostile:
    """Unpickling this would create a marker file; the loader must refuse before it runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every malformed file the matrix feeds the CLI, built once."""
    d = tmp_path_factory.mktemp("bad-inputs")
    img = np.zeros((4, 32, 32, 3), np.uint8)
    np.savez(d / "keys.npz", x=img, y=np.zeros(4, np.int64))
    np.savez(d / "gray.npz", images=np.zeros((4, 32, 32), np.uint8), labels=np.zeros(4, np.int64))
    np.savez(d / "floats.npz", images=img.astype(np.float32), labels=np.zeros(4, np.int64))
    np.savez(d / "fewlabels.npz", images=img, labels=np.zeros(3, np.int64))
    np.savez(d / "none.npz", images=img[:0], labels=np.zeros(0, np.int64))
    np.savez(d / "label99.npz", images=img, labels=np.array([0, 1, 2, 99]))
    np.savez(d / "negative.npz", images=img, labels=np.array([0, -3, 2, 1]))
    (d / "zero.npz").write_bytes(b"")
    np.save(d / "array.npy", img)
    (d / "array.npy").rename(d / "array.npz")
    (d / "notes.txt").write_text("not data\n")
    (d / "emptydir").mkdir()
    (d / "flat").mkdir()
    (d / "flat" / "a.png").write_bytes(b"")

    r20 = load_model("zoo:resnet20", weights="random").model
    sd = r20.state_dict()
    torch.save(sd, d / "good.pt")
    raw = (d / "good.pt").read_bytes()
    (d / "cut.pt").write_bytes(raw[: len(raw) // 2])
    (d / "text.pt").write_bytes(b"just some text, not a checkpoint\n" * 4)
    torch.save({"epoch": 3, "lr": 0.1}, d / "nodict.pt")
    torch.save({**sd, "linear.weight": torch.zeros(5, 64), "linear.bias": torch.zeros(5)}, d / "head5.pt")
    torch.save(load_model("zoo:resnet32", weights="random").model.state_dict(), d / "resnet32.pt")
    save_checkpoint(d / "resnet32.safetensors", load_model("zoo:resnet32", weights="random").model,
                    "zoo:resnet32", dataset="digits", num_classes=10, preprocessing=None)
    torch.save({"state_dict": sd, "payload": _Hostile(d / "PWNED")}, d / "hostile.pt")
    (d / "hostile-raw.pt").write_bytes(pickle.dumps(_Hostile(d / "PWNED"), protocol=2))

    (d / "done").mkdir()
    (d / "done" / "report.html").write_text("an earlier report")
    (d / "stopped").mkdir()
    (d / "stopped" / "progress.jsonl").write_text(json.dumps({"identity": {"analysis": "other"}}) + "\n")
    return d


# (id, arguments with {in} for the inputs folder, fragments the one error line must hold)
CASES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("unknown-model", ("eval", "--model", "resnet21", *TINY), ("'resnet21'", "valid: ", "resnet20")),
    ("unknown-source", ("eval", "--model", "foo:resnet20", *TINY), ("'foo'", "valid sources", "zoo:")),
    ("compare-unknown-model", ("lesion", *R20, *TINY, "--compare", "resnet21"), ("'resnet21'", "resnet20")),
    ("delete-out-of-range", ("lesion", *R20, *TINY, "--delete", "9"), ("'9'", "out of range", "0..8")),
    ("delete-negative", ("lesion", *R20, *TINY, "--delete=-1"), ("'-1'", "negative", "0..8")),
    ("delete-duplicate", ("lesion", *R20, *TINY, "--delete", "3,3"), ("'3'", "given twice")),
    ("delete-not-integer", ("lesion", *R20, *TINY, "--delete", "2.5"), ("'2.5'", "not a unit index", "0..8")),
    ("delete-unknown-name", ("lesion", *R20, *TINY, "--delete", "layer9.0"),
     ("'layer9.0'", "not a unit index or name", "layer1.0..layer3.2")),
    ("delete-empty-entry", ("lesion", *R20, *TINY, "--delete", "1,,2"), ("empty entry", "0..8")),
    ("random-k-reversed", ("lesion", *R20, *TINY, "--random-k", "5:2"), ("'5:2'", "1 <= A <= B <= 9")),
    ("random-k-too-large", ("lesion", *R20, *TINY, "--random-k", "1:10"), ("'1:10'", "1 <= A <= B <= 9")),
    ("random-k-zero", ("lesion", *R20, *TINY, "--random-k", "0:2"), ("'0:2'", "1 <= A <= B <= 9")),
    ("random-k-not-a-range", ("lesion", *R20, *TINY, "--random-k", "a:b"), ("'a:b'", "not a range", "A:B")),
    ("swaps-reversed", ("reorder", *R20, *TINY, "--swaps", "5:2"), ("'5:2'", "1 <= A <= B <= 10000")),
    ("swaps-zero", ("reorder", *R20, *TINY, "--swaps", "0"), ("'0'", "1 <= A <= B <= 10000")),
    ("swaps-too-many", ("reorder", *R20, *TINY, "--swaps", "1:20000"), ("'1:20000'", "<= 10000")),
    ("k-reversed", ("gradients", *R20, *TINY, "--k", "5:2"), ("'5:2'", "is empty", "lengths in 0..9")),
    ("k-out-of-range", ("gradients", *R20, *TINY, "--k", "0:10"), ("length 10", "lengths in 0..9")),
    ("k-negative", ("gradients", *R20, *TINY, "--k=-1"), ("length -1", "lengths in 0..9")),
    ("lesion-samples-0", ("lesion", *R20, *TINY, "--random-k", "1:2", "--samples", "0"),
     ("'--samples'", "0 is outside 1 <= x <= 10000")),
    ("lesion-samples-0-without-random-k", ("lesion", *R20, *TINY, "--samples", "0"),
     ("'--samples'", "0 is outside 1 <= x <= 10000")),
    ("reorder-samples-0", ("reorder", *R20, *TINY, "--samples", "0"), ("'--samples'", "0 is outside 1 <= x")),
    ("gradients-samples-0", ("gradients", *R20, *TINY, "--samples", "0"), ("'--samples'", "0 is outside 1 <= x")),
    ("share-0", ("gradients", *R20, *TINY, "--share", "0"), ("--share 0.0", "(0, 1]")),
    ("batch-size-0", ("eval", *R20, *TINY, "--batch-size", "0"), ("'--batch-size'", "0 is outside 1 <= x <= 65536")),
    ("batch-size-not-int", ("eval", *R20, *TINY, "--batch-size", "x"), ("'x'", "valid integer", "--help")),
    ("limit-negative", ("eval", *R20, *TINY, "--limit", "-1"), ("'--limit'", "-1 is outside x >= 1")),
    ("seed-negative", ("lesion", *R20, *TINY, "--seed", "-1"), ("'--seed'", "-1 is outside 0 <= x <= 4294967295")),
    ("unknown-option", ("eval", *R20, *TINY, "--bogus", "1"), ("--bogus", "--help")),
    ("missing-model", ("eval", *TINY), ("'--model'", "--help")),
    ("unknown-dataset", ("eval", *R20, "--random-init", "--dataset", "mnist"), ("'mnist'", "cifar10", "digits")),
    ("unknown-split", ("eval", *R20, *TINY, "--split", "val"), ("'val'", "train, test")),
    ("unknown-precision", ("eval", *R20, *TINY, "--precision", "fp8"), ("'fp8'", "fp32, bf16, fp16")),
    ("unknown-device", ("eval", *R20, *TINY[:-4], "--device", "tpu"), ("'tpu'", "auto, cpu, cuda")),
    ("unknown-analysis", ("run", "nope", *R20, *TINY), ("'nope'", "installed:", "lesion")),
    ("data-missing", (*DATA, "{in}/nope.npz"), ("nope.npz", "does not exist", ".npz")),
    ("data-empty-folder", (*DATA, "{in}/emptydir"), ("emptydir", "is empty", "image folder")),
    ("data-no-class-folders", (*DATA, "{in}/flat"), ("flat", "no class sub-folders")),
    ("data-not-npz", (*DATA, "{in}/notes.txt"), ("notes.txt", "not an .npz", "'images'")),
    ("npz-empty-file", (*DATA, "{in}/zero.npz"), ("zero.npz", "'images' uint8")),
    ("npz-single-array", (*DATA, "{in}/array.npz"), ("array.npz", "not an .npz archive")),
    ("npz-wrong-keys", (*DATA, "{in}/keys.npz"), ("keys.npz", "lacks images, labels")),
    ("npz-wrong-shape", (*DATA, "{in}/gray.npz"), ("(4, 32, 32)", "(N, H, W, 3)")),
    ("npz-wrong-dtype", (*DATA, "{in}/floats.npz"), ("float32", "uint8 (N, H, W, 3)")),
    ("npz-label-count", (*DATA, "{in}/fewlabels.npz"), ("4 images but 3 labels",)),
    ("npz-no-images", (*DATA, "{in}/none.npz"), ("none.npz", "holds no images")),
    ("npz-label-too-large", ("eval", *R20, "--random-init", "--dataset", "cifar10", "--data", "{in}/label99.npz"),
     ("99", "below 10")),
    ("npz-label-negative", (*DATA, "{in}/negative.npz"), ("-3", "outside [0, 10)")),
    ("checkpoint-missing", (*CKPT, "{in}/nope.pt"), ("nope.pt", "does not exist")),
    ("checkpoint-folder", (*CKPT, "{in}/emptydir"), ("emptydir", "not a file")),
    ("checkpoint-truncated", (*CKPT, "{in}/cut.pt"), ("cut.pt", "truncated")),
    ("checkpoint-not-a-checkpoint", (*CKPT, "{in}/text.pt"),
     ("text.pt", "not a checkpoint")),
    ("checkpoint-no-tensors", (*CKPT, "{in}/nodict.pt"),
     ("nodict.pt", "not a checkpoint", "state_dict")),
    ("checkpoint-shape-mismatch", (*CKPT, "{in}/head5.pt"),
     ("head5.pt", "shape mismatch linear.weight (checkpoint (5, 64), model (10, 64))", "linear.bias")),
    ("checkpoint-other-model", (*CKPT, "{in}/resnet32.pt"),
     ("resnet32.pt", "does not fit zoo:resnet20", "unexpected layer1.3.conv1.weight", "more)")),
    ("checkpoint-saved-for-other-model", (*CKPT, "{in}/resnet32.safetensors"),
     ("resnet32.safetensors", "saved for zoo:resnet32, not for zoo:resnet20")),
    ("checkpoint-hostile", (*CKPT, "{in}/hostile.pt"),
     ("hostile.pt", "refused to load", "posix.system", "weights_only=True")),
    ("checkpoint-hostile-raw-pickle", (*CKPT, "{in}/hostile-raw.pt"),
     ("hostile-raw.pt", "refused to load", "weights_only=True")),
    ("random-init-and-pretrained", ("eval", *R20, *TINY, "--pretrained"), ("--random-init", "--pretrained")),
    ("out-is-a-file", ("eval", *R20, *TINY, "--out", "{in}/notes.txt"), ("notes.txt", "not a directory")),
    ("out-under-a-file", ("eval", *R20, *TINY, "--out", "{in}/notes.txt/run"),
     ("notes.txt", "is a file, not a directory")),
    ("out-holds-a-report", ("eval", *R20, *TINY, "--out", "{in}/done"), ("done", "report.html", "--force")),
    ("out-holds-progress", ("lesion", *R20, *TINY, "--out", "{in}/stopped"), ("progress.jsonl", "--resume", "--force")),
    ("resume-another-run", ("lesion", *R20, *TINY, "--out", "{in}/stopped", "--resume"),
     ("progress.jsonl", "different run", "--force")),
    ("resume-without-out", ("gradients", *R20, *TINY, "--k", "1", "--samples", "1", "--resume"),
     ("--resume", "--out DIR")),
    ("reorder-without-swappable-units", ("reorder", "--model", "resnet8", *TINY),
     ("3 units", "two units with equal shapes")),
]


@pytest.fixture
def resnet8(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CIFAR ResNet with one unit per stage: no two units can trade places."""
    entry = registry.ModelEntry(
        "resnet8", "cifar-resnet", lambda num_classes=10: CifarResNet(1, num_classes), "n=1", 3, 78_042
    )
    monkeypatch.setitem(registry._REGISTRY, "resnet8", entry)


def _snapshot(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


@pytest.mark.parametrize(("args", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.usefixtures("resnet8")
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, inputs: Path,
    args: tuple[str, ...], expected: tuple[str, ...],
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # a run without --out would write under ./probe-reports/ here
    argv = [a.replace("{in}", str(inputs)) for a in args]
    out = None
    if "--out" not in argv and "--resume" not in argv:
        out = tmp_path / "out"
        argv += ["--out", str(out)]
    before = _snapshot(inputs)
    r = run_cli(capsys, *argv)
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert r.code == 2, (r.code, r.err)
    assert "Traceback" not in r.err + r.out
    assert len(lines) == 1, r.err
    assert lines[0].startswith("error: ")
    for fragment in expected:
        assert fragment in lines[0], (fragment, lines[0])
    assert list(cwd.iterdir()) == []
    assert out is None or not out.exists()
    assert _snapshot(inputs) == before  # nothing written next to the inputs either
    assert not (inputs / "PWNED").exists()  # the hostile checkpoints never ran their code


def test_matrix_has_at_least_25_cases() -> None:
    assert len(CASES) >= 25
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    r = run_cli(capsys, "eval", *R20, *TINY[:-4], "--device", "cuda", "--out", tmp_path / "out")
    assert r.code == 2 and "Traceback" not in r.err
    assert r.err.strip().splitlines() == ["error: --device cuda: CUDA is not available here; use --device cpu or auto"]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        r = run_cli(capsys, "eval", *R20, *TINY, "--out", locked / "run")
    finally:
        locked.chmod(0o700)
    assert r.code == 2 and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1 and "is not writable" in r.err and "locked" in r.err
    assert list(locked.iterdir()) == []


def test_force_overwrites_a_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "report.html").write_text("old")
    r = run_cli(capsys, "eval", *R20, *TINY, "--out", tmp_path, "--force")
    assert r.code == 0, r.err
    assert (tmp_path / "report.html").read_text() != "old"
    assert json.loads((tmp_path / "results.json").read_text())["result"]["n"] == 8


def test_without_out_each_run_gets_its_own_folder(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert run_cli(capsys, "eval", *R20, *TINY).code == 0
    runs = sorted((tmp_path / "probe-reports").iterdir())
    assert len(runs) == 2
    assert all(p.name.startswith("evaluate-resnet20-") for p in runs)
    assert all(sorted(f.name for f in p.iterdir()) == ["report.html", "results.csv", "results.json"] for p in runs)
    assert not list(tmp_path.rglob(".*.tmp"))  # atomic writes leave no temporary files


def test_no_arguments_shows_help_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    r = run_cli(capsys)
    assert r.code == 0
    assert "Usage: resnet-probe" in r.out + r.err and "Traceback" not in r.out + r.err
