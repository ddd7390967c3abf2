"""Text data: the byte tokenizer, the pystdlib splits and their windows."""

from __future__ import annotations

import hashlib
import lzma
import sysconfig
from pathlib import Path

import pytest
import torch

from resnet_probe.data import load_data
from resnet_probe.data.given import GivenSource
from resnet_probe.data.text import (
    BYTE_VOCAB,
    PYSTDLIB_FILE,
    PYSTDLIB_SHA256,
    decode_bytes,
    encode_bytes,
    file_paths,
    is_held_out,
    pystdlib_test_text,
    read_stdlib,
    stdlib_files,
    windows,
)
from resnet_probe.errors import DataError

TEST_TEXT_SHA256 = "d9d9b942c083a980cc3bb566a064adae48118c5df44fe2a00ef0a387a5be0203"


def test_bytes_round_trip_with_multibyte_characters() -> None:
    text = "déjà vu — λx: x ≠ 0 🐍\n"
    ids = encode_bytes(text)
    assert ids.dtype == torch.int64 and ids.dim() == 1
    assert len(ids) == len(text.encode("utf-8")) == 32
    assert int(ids.max()) < BYTE_VOCAB and int(ids.min()) >= 0
    assert ids[:2].tolist() == [100, 195]  # 'd', first byte of 'é'
    assert decode_bytes(ids) == text
    assert decode_bytes(ids.tolist()) == text
    assert encode_bytes("").numel() == 0


def test_decode_rejects_ids_beyond_a_byte() -> None:
    with pytest.raises(DataError, match=r"\[0, 256\)"):
        decode_bytes([65, 256])


def test_windows_are_non_overlapping_and_seeded() -> None:
    stream = torch.arange(10)
    assert windows(stream, 3).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    a, b = windows(stream, 2, shuffle=True, seed=1), windows(stream, 2, shuffle=True, seed=1)
    assert torch.equal(a, b)
    assert sorted(a[:, 0].tolist()) == [0, 2, 4, 6, 8]
    with pytest.raises(DataError, match="longer than the text"):
        windows(stream, 11)
    with pytest.raises(DataError, match="at least 2 tokens"):
        windows(stream, 1)


def test_shipped_test_split_is_pinned_and_in_order() -> None:
    raw = PYSTDLIB_FILE.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == PYSTDLIB_SHA256
    assert len(raw) < 1_000_000
    text = lzma.decompress(raw).decode("utf-8")
    assert hashlib.sha256(text.encode()).hexdigest() == TEST_TEXT_SHA256
    assert len(text.encode()) == 657_025
    paths = file_paths(text)
    assert len(paths) == 39 and "functools.py" in paths and all(is_held_out(p) for p in paths)
    assert not any("test" in p.split("/")[:-1] or "site-packages" in p for p in paths)

    src = load_data("pystdlib", split="test", seq_len=128)
    assert isinstance(src, GivenSource)
    ids = src.obj[0]
    assert ids.dtype == torch.int64 and tuple(ids.shape) == (657_025 // 128, 128) == (5133, 128)
    # in stream order: the first window is the text's first 128 bytes
    assert decode_bytes(ids[0]) == text.encode()[:128].decode("utf-8", errors="replace")
    assert torch.equal(ids.reshape(-1), encode_bytes(text)[: 5133 * 128])
    doc = src.describe()
    assert doc["text_sha256"] == TEST_TEXT_SHA256 and doc["tokenizer"] == "bytes"
    assert (doc["seq_len"], doc["tokens"], doc["stream_tokens"], doc["python"]) == (128, 657_024, 657_025, "3.11.7")
    again = load_data("pystdlib", split="test", seq_len=128, seed=5, limit=10)
    assert torch.equal(again.obj[0], ids[:10])
    assert tuple(load_data("pystdlib", seq_len=512).obj[0].shape) == (1283, 512)


def test_a_damaged_shipped_text_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "pystdlib_test.txt.xz"
    bad.write_bytes(lzma.compress(b"# ==== x.py ====\nx = 1\n"))
    monkeypatch.setattr("resnet_probe.data.text.PYSTDLIB_FILE", bad)
    with pytest.raises(DataError, match="damaged"):
        pystdlib_test_text()


def test_train_split_excludes_the_held_out_files() -> None:
    root = Path(sysconfig.get_paths()["stdlib"])
    eligible = [rel for rel, _ in stdlib_files(root)]
    held = {rel for rel in eligible if is_held_out(rel)}
    assert 0.03 < len(held) / len(eligible) < 0.08
    assert not any(rel.startswith(("test/", "site-packages/")) for rel in eligible)
    train_text, n_files = read_stdlib(root, held_out=False)
    train_paths = file_paths(train_text)
    assert len(train_paths) == n_files > 500
    assert not held.intersection(train_paths)
    assert set(file_paths(pystdlib_test_text())).isdisjoint(train_paths)

    a = load_data("pystdlib", split="train", seq_len=64, seed=0, limit=100)
    b = load_data("pystdlib", split="train", seq_len=64, seed=0, limit=100)
    c = load_data("pystdlib", split="train", seq_len=64, seed=1, limit=100)
    assert torch.equal(a.obj[0], b.obj[0]) and not torch.equal(a.obj[0], c.obj[0])
    assert tuple(a.obj[0].shape) == (100, 64)
    doc = a.describe()
    assert doc["windows"] == "shuffled" and doc["seed"] == 0 and doc["files"] == n_files
    assert doc["text_sha256"] == hashlib.sha256(train_text.encode()).hexdigest()
    assert doc["stream_tokens"] == len(train_text.encode())


def test_pystdlib_takes_no_path_and_no_short_window() -> None:
    with pytest.raises(DataError, match="built in"):
        load_data("pystdlib", "some.npz")
    with pytest.raises(DataError, match="at least 2 tokens"):
        load_data("pystdlib", seq_len=1)
