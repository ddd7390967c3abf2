"""``hf:DIR``: a causal LM saved with save_pretrained, studied offline on token ids from an .npy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import resnet_probe as rp
from resnet_probe.errors import DataError, OfflineError

from ..cli.helpers import run_cli

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100, n_positions=32,
                                     bos_token_id=0, eos_token_id=0)
    transformers.GPT2LMHeadModel(config).save_pretrained(root / "tiny")
    np.save(root / "ids.npy", np.random.default_rng(0).integers(0, 100, size=(20, 12)))
    return root / "tiny", root / "ids.npy"


def test_lesion_of_a_saved_causal_lm_on_token_ids(capsys: pytest.CaptureFixture[str], saved, tmp_path: Path) -> None:
    model_dir, ids = saved
    out = tmp_path / "run"
    r = run_cli(capsys, "lesion", "--model", f"hf:{model_dir}", "--data", str(ids), "--out", str(out))
    assert r.code == 0, r.err
    doc = json.loads((out / "results.json").read_text())
    assert doc["result"]["metric"] == "loss" and doc["data"]["tokens"] == 240
    assert [c["names"] for c in doc["result"]["configs"]] == [
        ["transformer.h.0.attn"], ["transformer.h.0.mlp"], ["transformer.h.1.attn"], ["transformer.h.1.mlp"]]
    said = " ".join(r.out.split())  # the console wraps lines
    assert "a Hugging Face GPT2LMHeadModel with the weights saved at" in said
    assert "20 sequences; 240 tokens, 11 of each sequence predicted" in said
    model = transformers.GPT2LMHeadModel.from_pretrained(model_dir).eval()
    tokens = torch.from_numpy(np.load(ids)).long()
    with torch.no_grad():
        logits = model(tokens).logits
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 100), tokens[:, 1:].reshape(-1), reduction="none").view(20, 11).mean(1)
    assert doc["result"]["baseline"]["value"] == pytest.approx(float(expected.double().mean()), abs=1e-5)


def test_nothing_is_downloaded_and_bad_ids_are_one_line(saved, tmp_path: Path) -> None:
    with pytest.raises(OfflineError, match="local directory or the local Hugging Face cache"):
        rp.load_model(f"hf:{tmp_path / 'nothing-here'}")
    floats = tmp_path / "floats.npy"
    np.save(floats, np.zeros((4, 8)))
    with pytest.raises(DataError, match="expected integer token ids"):
        rp.load_data(data=floats)
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros(8, dtype=np.int64))
    with pytest.raises(DataError, match="expected integer token ids"):
        rp.load_data(data=flat)
