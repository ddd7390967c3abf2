"""User-supplied text (--title, checkpoint metadata, paths) lands in report.html escaped, never as markup."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch

from resnet_probe.models.checkpoints import save_checkpoint
from resnet_probe.models.load import load_model

from .cli.helpers import run_cli

TITLE = "<script>alert(1)</script>"
HOSTILE_DIR = "<img src=x onerror=alert(2)>"  # a legal folder name: no slash
HOSTILE_DATASET = "</td><script>alert(3)</script>"
HISTORY = [{"epoch": 1, "iteration": 4, "lr": 0.1, "train_loss": 2.0, "train_error": 0.8,
            "test_loss": 2.1, "test_error": 0.85, "seconds": 0.5}]


class _Tags(HTMLParser):
    """Every start tag and its attributes, as a browser's tokenizer would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def _assert_inert(html: str) -> set[str]:
    parser = _Tags()
    parser.feed(html)
    names = {tag for tag, _ in parser.tags}
    assert "script" not in names and "img" not in names and "iframe" not in names
    handlers = [(tag, k) for tag, attrs in parser.tags for k, _ in attrs if k.lower().startswith("on")]
    assert handlers == []
    assert "<script" not in html.lower()
    return names


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Path:
    """A folder whose name is an HTML tag with an event handler."""
    d = tmp_path / HOSTILE_DIR
    d.mkdir()
    return d


def test_title_is_escaped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = run_cli(capsys, "eval", "--model", "resnet20", "--random-init", "--dataset", "digits", "--limit", "8",
                "--device", "cpu", "--title", TITLE, "--out", out)
    assert r.code == 0, r.err
    html = (out / "report.html").read_text()
    names = _assert_inert(html)
    assert {"html", "title", "h1", "table"} <= names  # a real report, parsed
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>" in html
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 2  # <title> and <h1>
    assert json.loads((out / "results.json").read_text())["title"] == TITLE  # JSON keeps the raw text

    (out / "report.html").unlink()
    r = run_cli(capsys, "report", out / "results.json", "--title", "<b onmouseover=alert(4)>x</b>")
    assert r.code == 0, r.err
    again = (out / "report.html").read_text()
    _assert_inert(again)
    assert "&lt;b onmouseover=alert(4)&gt;x&lt;/b&gt;" in again


def test_checkpoint_path_and_metadata_are_escaped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, hostile_dir: Path
) -> None:
    torch.manual_seed(0)
    model = load_model("zoo:resnet20", weights="random").model
    ckpt = save_checkpoint(hostile_dir / "r20.safetensors", model, "zoo:resnet20", dataset=HOSTILE_DATASET,
                           num_classes=10, preprocessing=None, history=HISTORY)
    out = tmp_path / "run"
    r = run_cli(capsys, "run", "train-curves", "--model", "resnet20", "--checkpoint", ckpt, "--out", out)
    assert r.code == 0, r.err
    html = (out / "report.html").read_text()
    _assert_inert(html)
    assert "&lt;img src=x onerror=alert(2)&gt;" in html  # the checkpoint path, shown as text
    assert "&lt;/td&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in html  # the dataset from its metadata


def test_data_path_is_escaped(capsys: pytest.CaptureFixture[str], tmp_path: Path, hostile_dir: Path) -> None:
    rng = np.random.default_rng(0)
    data = hostile_dir / "<svg onload=alert(5)>.npz"
    np.savez(data, images=rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), labels=np.arange(8) % 10)
    out = tmp_path / "run"
    r = run_cli(capsys, "eval", "--model", "resnet20", "--random-init", "--data", data, "--device", "cpu",
                "--out", out)
    assert r.code == 0, r.err
    html = (out / "report.html").read_text()
    _assert_inert(html)
    assert "npz:&lt;svg onload=alert(5)&gt;.npz" in html
    assert "<svg onload" not in html
