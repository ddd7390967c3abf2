"""Hostile input, second round: every file the tool reads and every number it takes is checked before use.

Each refusal is exit 2 and one ``error:`` line naming the file or value and what is allowed; no
traceback, nothing written into ``--out`` (nor next to the inputs).
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from resnet_probe.cli.app import app, main
from safetensors.torch import save_file

from resnet_probe.bounds import MAX_SAMPLES, MAX_SEED
from resnet_probe.data import load_data
from resnet_probe.data import npz as npz_reader
from resnet_probe.errors import DataError, OutputError, ProbeError
from resnet_probe.models.checkpoints import read_checkpoint, save_checkpoint
from resnet_probe.models.load import load_model
from resnet_probe.models.weights import PUBLISHED

from .cli.helpers import run_cli

TINY = ("--model", "resnet20", "--random-init", "--dataset", "digits", "--device", "cpu")
EVAL = ("eval", *TINY, "--limit", "8", "--batch-size", "8")
DATA = ("eval", "--model", "resnet20", "--random-init", "--device", "cpu", "--data")  # + the bad path
CKPT = ("eval", "--model", "resnet20", "--dataset", "digits", "--limit", "8", "--device", "cpu", "--checkpoint")
# 32 images, 16 configurations a chunk: the journal holds its identity and 16 scored orders.
REORDER = ("reorder", *TINY, "--seed", "3", "--limit", "32", "--batch-size", "16", "--swaps", "1:4", "--samples", "10")
LESION = ("lesion", *TINY, "--limit", "16", "--batch-size", "16", "--random-k", "1:2", "--samples", "2")


def _quiet_cli(*args: object) -> int:
    """Run the CLI where no capsys is at hand (module fixtures); its exit code."""
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _npy(array_header: dict[str, Any], payload: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, array_header)
    return buf.getvalue() + payload


def _png(side: int, seed: int) -> bytes:
    noise = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    return buf.getvalue()


def _folder(root: Path, bad_name: str, bad_bytes: bytes) -> Path:
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(2):
            (root / name / f"{i}.png").write_bytes(_png(40, 10 * k + i))
    (root / "dog" / bad_name).write_bytes(bad_bytes)
    return root


def _journal_variant(src: Path, dst: Path, edit: Callable[[list[bytes]], list[bytes]]) -> None:
    shutil.copytree(src, dst)
    journal = dst / "progress.jsonl"
    journal.write_bytes(b"".join(edit(journal.read_bytes().splitlines(keepends=True))))


def _set_value(line: bytes, **fields: Any) -> bytes:
    doc = json.loads(line)
    doc["value"].update(fields)
    return (json.dumps(doc) + "\n").encode()


def _results_variant(src: Path, dst: Path, edit: Callable[[dict[str, Any]], Any] | None = None,
                     text: Callable[[str], str] | None = None) -> None:
    doc = json.loads(src.read_text())
    if edit is not None:
        edit(doc)
    raw = json.dumps(doc)
    dst.write_text(text(raw) if text is not None else raw)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every hostile file of the matrix, built once."""
    d = tmp_path_factory.mktemp("hostile")
    img = np.zeros((4, 32, 32, 3), np.uint8)
    labels = np.zeros(4, np.int64)

    # .npz: a header that claims more than the archive holds, objects, wrapping labels, corrupt data
    claims = {"descr": "|u1", "fortran_order": False, "shape": (4_000_000, 32, 32, 3)}
    with zipfile.ZipFile(d / "claims.npz", "w") as zf:
        zf.writestr("images.npy", _npy(claims, img.tobytes()))
        zf.writestr("labels.npy", _npy({"descr": "<i8", "fortran_order": False, "shape": (4,)}, labels.tobytes()))
    np.savez(d / "objects.npz", images=np.array([None] * 4, dtype=object), labels=labels)
    np.savez(d / "huge-label.npz", images=img, labels=np.array([0, 1, 2**63 + 5, 3], np.uint64))
    noise = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    np.savez_compressed(d / "corrupt.npz", images=noise, labels=np.zeros(64, np.int64))
    raw = bytearray((d / "corrupt.npz").read_bytes())
    raw[len(raw) // 3 : len(raw) // 3 + 64] = bytes(64)  # zeros in the middle of the deflated images
    (d / "corrupt.npz").write_bytes(bytes(raw))
    whole = (d / "huge-label.npz").read_bytes()
    (d / "cut.npz").write_bytes(whole[: len(whole) // 2])

    # image folders: a file that is no image, a PNG cut in half
    _folder(d / "undecodable", "bad.png", b"this is not a png at all")
    _folder(d / "truncated", "cut.png", _png(64, 99)[:2000])

    # weights that load but mean nothing
    sd = load_model("zoo:resnet20", weights="random").model.state_dict()
    torch.save({**sd, "layer2.1.conv2.weight": torch.full_like(sd["layer2.1.conv2.weight"], float("nan"))},
               d / "nan.pt")
    save_file({k: v.contiguous() for k, v in ({**sd, "bn1.running_var": torch.full((16,), float("inf"))}).items()},
              str(d / "inf.safetensors"))
    torch.save({k: v.to(torch.int64) if v.is_floating_point() else v for k, v in sd.items()}, d / "int64.pt")

    # a real interrupted reorder journal, then damaged copies of it
    from resnet_probe.analyses import resumable

    real = resumable.score_plans
    calls: list[int] = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(resumable, "score_plans", interrupted)
        assert _quiet_cli(*REORDER, "--out", d / "journal-good") == 130
    good = d / "journal-good"
    _journal_variant(good, d / "journal-forged", lambda ls: [*ls[:2], _set_value(ls[2], correct=999), *ls[3:]])
    _journal_variant(good, d / "journal-binary", lambda ls: [*ls[:3], b"\x00\xff\x93binary\n", *ls[3:]])
    _journal_variant(good, d / "journal-malformed", lambda ls: [*ls[:4], b'{"key": [0, 1], "value": \n', *ls[4:]])
    _journal_variant(good, d / "journal-type", lambda ls: [*ls[:2], _set_value(ls[2], correct="31"), *ls[3:]])
    nan = (b'"loss_sum": ', b'"loss_sum": NaN, "x": ')
    _journal_variant(good, d / "journal-nan", lambda ls: [ls[0], ls[1].replace(*nan), *ls[2:]])

    # results.json of real runs, then damaged copies
    assert _quiet_cli(*EVAL, "--out", d / "run-eval") == 0
    assert _quiet_cli(*LESION, "--out", d / "run-lesion") == 0
    ev, le = d / "run-eval" / "results.json", d / "run-lesion" / "results.json"
    _results_variant(ev, d / "result-list.json", lambda doc: doc.update(result=[]))
    _results_variant(ev, d / "model-string.json", lambda doc: doc.update(model="resnet20"))
    _results_variant(ev, d / "params-string.json", lambda doc: doc["model"].update(params="many"))
    _results_variant(ev, d / "seed-negative.json", lambda doc: doc.update(seed=-1))
    _results_variant(ev, d / "accuracy-string.json", lambda doc: doc["result"].update(accuracy="high"))
    _results_variant(ev, d / "forged-correct.json", lambda doc: doc["result"].update(correct=999))
    _results_variant(ev, d / "overflow.json", text=lambda t: t.replace('"loss": ', '"loss": 1e999, "x": ', 1))
    big = "9" * 400  # an integer no float holds
    _results_variant(ev, d / "big-int.json", text=lambda t: t.replace('"loss": ', f'"loss": {big}, "x": ', 1))
    _results_variant(le, d / "lesion-accuracy.json", lambda doc: doc["result"]["configs"][1].update(accuracy=15.6))
    _results_variant(le, d / "lesion-missing.json", lambda doc: doc["result"]["configs"][0].pop("loss"))
    (d / "array.json").write_text("[1, 2, 3]")
    (d / "binary.json").write_bytes(b"\xff\xfe{}")
    return d


# (id, arguments with {in} for the inputs folder, fragments the one error line must hold)
CASES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    # data files
    ("npz-header-claims-more", (*DATA, "{in}/claims.npz"),
     ("claims.npz", "'images' claims uint8 (4000000, 32, 32, 3) (12.3 GB)", "truncated or corrupt")),
    ("npz-objects", (*DATA, "{in}/objects.npz"), ("objects.npz", "'images' holds Python objects", "never unpickled")),
    ("npz-label-past-int64", (*DATA, "{in}/huge-label.npz"),
     ("huge-label.npz", "outside [0, 100000)", "9223372036854775813", "below 100000")),
    ("npz-label-past-int64-as-cifar10", ("eval", "--model", "resnet20", "--random-init", "--dataset", "cifar10",
                                         "--data", "{in}/huge-label.npz"),
     ("huge-label.npz as cifar10", "9223372036854775813", "below 10")),
    ("npz-corrupt-deflate", (*DATA, "{in}/corrupt.npz"), ("corrupt.npz", "'images'", "corrupt")),
    ("npz-cut-archive", (*DATA, "{in}/cut.npz"), ("cut.npz", "cannot read", "as .npz")),
    # image folders
    ("folder-undecodable", (*DATA, "{in}/undecodable", "--limit", "8"),
     ("cannot decode", "undecodable/dog/bad.png", "not an image format PIL can read", "repair or remove")),
    ("folder-truncated", (*DATA, "{in}/truncated", "--limit", "8"),
     ("cannot decode", "truncated/dog/cut.png", "OSError", "repair or remove")),
    ("folder-truncated-in-a-worker", (*DATA, "{in}/truncated", "--limit", "8", "--workers", "2"),
     ("cannot decode", "truncated/dog/cut.png", "OSError")),
    # checkpoints whose weights mean nothing
    ("weights-nan", (*CKPT, "{in}/nan.pt"), ("nan.pt", "NaN or Inf in layer2.1.conv2.weight", "expected finite")),
    ("weights-inf-safetensors", (*CKPT, "{in}/inf.safetensors"), ("inf.safetensors", "NaN or Inf in bn1.running_var")),
    ("weights-int64", (*CKPT, "{in}/int64.pt"),
     ("int64.pt", "non-floating weights: conv1.weight (torch.int64)", "more)", "expected float tensors")),
    # journals
    ("journal-forged-correct", (*REORDER, "--out", "{in}/journal-forged", "--resume"),
     ("journal-forged/progress.jsonl line 3", "correct 999 exceeds n 32", "--force")),
    ("journal-binary-line", (*REORDER, "--out", "{in}/journal-binary", "--resume"),
     ("journal-binary/progress.jsonl line 4", "not UTF-8 text")),
    ("journal-malformed-line", (*REORDER, "--out", "{in}/journal-malformed", "--resume"),
     ("journal-malformed/progress.jsonl line 5", "not a finite JSON line")),
    ("journal-wrong-type", (*REORDER, "--out", "{in}/journal-type", "--resume"),
     ("progress.jsonl line 3", "value.correct: Input should be a valid integer")),
    ("journal-nan", (*REORDER, "--out", "{in}/journal-nan", "--resume"), ("line 2", "NaN is not a finite number")),
    # results.json for `report`
    ("results-result-not-an-object", ("report", "{in}/result-list.json"), ("result is []", "a JSON object")),
    ("results-model-not-an-object", ("report", "{in}/model-string.json"), ("model is 'resnet20'", "a JSON object")),
    ("results-params-string", ("report", "{in}/params-string.json"), ("model.params is 'many'", "valid integer")),
    ("results-seed-negative", ("report", "{in}/seed-negative.json"), ("seed is -1", "greater than or equal to 0")),
    ("results-accuracy-string", ("report", "{in}/accuracy-string.json"),
     ("result.accuracy is 'high'", "valid number")),
    ("results-forged-correct", ("report", "{in}/forged-correct.json"),
     ("result.correct = 999 of n = 8", "0 <= correct <= n")),
    ("results-overflow", ("report", "{in}/overflow.json"), ("overflow.json", "1e999 overflows a float")),
    ("results-big-int", ("report", "{in}/big-int.json"), ("result.loss overflows a float", "finite number")),
    ("results-accuracy-above-1", ("report", "{in}/lesion-accuracy.json"),
     ("result.configs[1].accuracy = 15.6", "an accuracy lies in [0, 1]")),
    ("results-missing-field", ("report", "{in}/lesion-missing.json"), ("not a lesion result", "loss")),
    ("results-array", ("report", "{in}/array.json"), ("array.json", "not a resnet-probe results.json")),
    ("results-binary", ("report", "{in}/binary.json"), ("binary.json", "not UTF-8")),
    ("results-is-a-directory", ("report", "{in}/run-eval"), ("run-eval is a directory", "results.json")),
    ("report-html-is-a-directory", ("report", "{in}/run-eval/results.json", "--html", "{in}"),
     ("--html", "is a directory", "report.html")),
    # numbers past their bounds
    ("seed-2-64", (*EVAL, "--seed", str(2**64)), ("'--seed'", f"{2**64} is outside 0 <= x <= {MAX_SEED}")),
    ("seed-just-past", (*EVAL, "--seed", str(MAX_SEED + 1)), ("'--seed'", f"<= {MAX_SEED}")),
    ("lesion-samples-10-12", ("lesion", *TINY, "--random-k", "1:2", "--samples", str(10**12)),
     ("'--samples'", f"1000000000000 is outside 1 <= x <= {MAX_SAMPLES}")),
    ("reorder-samples-past", ("reorder", *TINY, "--samples", str(MAX_SAMPLES + 1)), ("'--samples'", "<= 10000")),
    ("gradients-samples-past", ("gradients", *TINY, "--samples", str(MAX_SAMPLES + 1)), ("'--samples'", "<= 10000")),
    ("batch-size-past", (*EVAL, "--batch-size", "65537"), ("'--batch-size'", "1 <= x <= 65536")),
    ("workers-past", (*EVAL, "--workers", "65"), ("'--workers'", "0 <= x <= 64")),
    ("workers-negative", (*EVAL, "--workers", "-1"), ("'--workers'", "0 <= x <= 64")),
    ("confidence-nan", (*EVAL, "--confidence", "nan"), ("'--confidence'", "nan is outside 0.5 <= x <= 0.999")),
    ("tolerance-1", (*EVAL, "--tolerance", "1"), ("'--tolerance'", "0.001 <= x <= 0.499")),
    ("limit-0", (*EVAL, "--limit", "0"), ("'--limit'", "0 is outside x >= 1")),
    ("response-std-seed", ("response-std", *TINY, "--seed", str(2**70)), ("'--seed'", f"<= {MAX_SEED}")),
]


def _snapshot(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


@pytest.mark.parametrize(("args", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, inputs: Path,
    args: tuple[str, ...], expected: tuple[str, ...],
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    argv = [a.replace("{in}", str(inputs)) for a in args]
    out = tmp_path / "out"
    if argv[0] == "report" and "--html" not in argv:
        argv += ["--html", str(out / "report.html")]
    elif argv[0] != "report" and "--out" not in argv:
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
    assert list(cwd.iterdir()) == [] and not out.exists()
    assert _snapshot(inputs) == before  # journals never appended to, no report beside a results.json


def test_matrix_covers_every_kind_of_input() -> None:
    kinds = {c[0].split("-")[0] for c in CASES}
    assert {"npz", "folder", "weights", "journal", "results", "report", "seed", "lesion"} <= kinds
    assert len({c[0] for c in CASES}) == len(CASES)


def test_the_undamaged_journal_resumes(capsys: pytest.CaptureFixture[str], tmp_path: Path, inputs: Path) -> None:
    out = tmp_path / "journal"
    shutil.copytree(inputs / "journal-good", out)
    r = run_cli(capsys, *REORDER, "--out", out, "--resume")
    assert r.code == 0, r.err
    assert not (out / "progress.jsonl").exists() and (out / "results.json").is_file()


def test_the_undamaged_results_render(capsys: pytest.CaptureFixture[str], tmp_path: Path, inputs: Path) -> None:
    for run in ("run-eval", "run-lesion"):
        target = tmp_path / f"{run}.html"
        r = run_cli(capsys, "report", inputs / run / "results.json", "--html", target)
        assert r.code == 0, r.err
        page = target.read_text()
        assert page.startswith("<!DOCTYPE html>") and "<th>preprocessing</th>" in page


# --- reading a big .npz: checked against memory before allocating, --limit honoured while reading ---


def test_npz_larger_than_memory_is_refused_and_limit_reads_only_what_fits(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # 4096 images inflate to 12.6 MB from a few kB: the machine "has" 1 MB to spare
    np.savez_compressed(tmp_path / "bomb.npz", images=np.zeros((4096, 32, 32, 3), np.uint8),
                        labels=np.zeros(4096, np.int64))
    assert (tmp_path / "bomb.npz").stat().st_size < 100_000
    monkeypatch.setattr(npz_reader, "available_memory", lambda: 1_000_000)
    monkeypatch.setattr(npz_reader, "CHUNK_BYTES", 3072 * 8)
    base = ("eval", "--model", "resnet20", "--random-init", "--dataset", "cifar10", "--device", "cpu",
            "--data", tmp_path / "bomb.npz")
    r = run_cli(capsys, *base, "--out", tmp_path / "all")
    assert r.code == 2 and "Traceback" not in r.err
    assert r.err.strip().splitlines() == [
        "error: bomb.npz: 4096 images uint8 (32, 32, 3) need 12.7 MB, more than 80% of the 1.0 MB of memory "
        "available; pass --limit N (about 231 fit)"
    ]
    assert not (tmp_path / "all").exists()
    assert len(load_data("cifar10", tmp_path / "bomb.npz", limit=231)) == 231  # the advice holds
    with pytest.raises(DataError, match="about 231 fit"):
        load_data("cifar10", tmp_path / "bomb.npz", limit=232)
    ok = run_cli(capsys, *base, "--limit", "64", "--out", tmp_path / "some")
    assert ok.code == 0, ok.err
    assert json.loads((tmp_path / "some" / "results.json").read_text())["data"]["n"] == 64


# --- the same weights give the same numbers, whatever file they arrive in ----------------------


def test_akamaster_file_and_its_copies_give_identical_results(capsys: pytest.CaptureFixture[str],
                                                                tmp_path: Path) -> None:
    original = PUBLISHED[("resnet20", "cifar10")].path
    assert original is not None
    tensors = read_checkpoint(original).state_dict
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp_path / "copy.safetensors"))
    model = load_model("zoo:resnet20", checkpoint=original).model
    save_checkpoint(tmp_path / "ours.safetensors", model, "zoo:resnet20", dataset="cifar10", num_classes=10,
                    preprocessing=None)  # re-saved without saying how it normalises
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    docs = {}
    for name, path in [("th", original), ("safetensors", tmp_path / "copy.safetensors"),
                       ("ours", tmp_path / "ours.safetensors"), ("pt", tmp_path / "plain.pt")]:
        out = tmp_path / name
        args = ("eval", "--model", "resnet20", "--checkpoint", path, "--dataset", "cifar10-sample",
                "--limit", "64", "--device", "cpu", "--out", out)
        assert run_cli(capsys, *args).code == 0
        docs[name] = json.loads((out / "results.json").read_text())
    first = docs["th"]
    assert first["result"]["correct"] == 59 and first["result"]["n"] == 64
    prep = first["model"]["preprocessing"]
    assert prep["mean"] == [0.485, 0.456, 0.406] and prep["std"] == [0.229, 0.224, 0.225]
    assert prep["source"] == "weights" and "published-weights table" in prep["from"]
    assert {d["model"]["checkpoint_format"] for d in docs.values()} == {"akamaster", "safetensors", "resnet-probe",
                                                                         "state_dict"}
    for name, doc in docs.items():
        assert doc["result"] == first["result"], name
        assert {k: v for k, v in doc["model"]["preprocessing"].items() if k != "from"} == \
               {k: v for k, v in prep.items() if k != "from"}, name
    header = (tmp_path / "safetensors" / "report.html").read_text()
    stated = "mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), native size; from the published-weights table"
    assert stated in header
    assert "recognised in safetensors file copy.safetensors" in header


def test_preprocessing_of_an_image_folder_is_recorded(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = tmp_path / "pets"
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        (root / name / "0.png").write_bytes(_png(48, k))
    out = tmp_path / "run"
    assert run_cli(capsys, "eval", "--model", "resnet20", "--random-init", "--data", root, "--device", "cpu",
                   "--out", out).code == 0
    prep = json.loads((out / "results.json").read_text())["model"]["preprocessing"]
    assert (prep["resize"], prep["crop"], prep["source"]) == (256, 224, "dataset")
    assert prep["from"] == "the data set folder:pets"
    assert "resize 256, centre crop 224; from the data set folder:pets" in (out / "report.html").read_text()


# --- the writer refuses numbers that cannot be ---------------------------------------------------


def test_writer_refuses_an_accuracy_outside_0_1(tmp_path: Path) -> None:
    import dataclasses

    import resnet_probe as rp

    result = rp.evaluate(rp.load_model("resnet20", weights="random"), rp.load_data("digits", limit=8))
    assert result.run is not None
    broken = dataclasses.replace(result, accuracy=15.609375, correct=999)
    broken = dataclasses.replace(broken, run=dataclasses.replace(result.run, result=broken.to_dict()))
    with pytest.raises(OutputError, match=r"result.correct = 999 of n = 8; allowed 0 <= correct <= n.*a bug"):
        broken.save(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_api_seed_bound(tmp_path: Path) -> None:
    import resnet_probe as rp

    with pytest.raises(ProbeError, match=r"--seed 18446744073709551616: must be a whole number with 0 <= x <= 4294967"):
        rp.evaluate(rp.load_model("resnet20", weights="random"), rp.load_data("digits", limit=8), seed=2**64)


def test_largest_seed_runs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_cli(capsys, *EVAL, "--seed", str(MAX_SEED), "--out", tmp_path / "run").code == 0


# --- every numeric option states its bounds in --help -------------------------------------------

# gradients' --share is checked in (0, 1] by the analysis (typer's bounds are closed intervals)
UNBOUNDED = {("gradients", "--share")}


def test_every_numeric_option_is_bounded() -> None:
    group = typer.main.get_command(app)
    unbounded = set()
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        for param in command.params:
            descriptor = getattr(param, "type_descriptor", None)
            numeric = descriptor is not None and descriptor.annotation in (int, float)
            if numeric and getattr(param, "min", None) is None and getattr(param, "max", None) is None:
                unbounded.add((name, param.opts[0]))
    assert unbounded == UNBOUNDED


def test_help_states_the_bounds() -> None:
    group = typer.main.get_command(app)
    lesion = group.commands["lesion"]  # type: ignore[attr-defined]
    bounded = {p.opts[0]: (p.min, p.max) for p in lesion.params if getattr(p, "min", None) is not None}
    assert bounded["--samples"] == (1, MAX_SAMPLES) and bounded["--seed"] == (0, MAX_SEED)
    assert bounded["--batch-size"] == (1, 65536) and bounded["--workers"] == (0, 64) and bounded["--limit"] == (1, None)
    for p in lesion.params:
        if p.opts[0] in bounded:
            assert p._get_number_range_help_str() is not None  # rendered as [1<=x<=10000] in --help
