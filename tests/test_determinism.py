"""Same seed, same results.json on the CPU, for every analysis; another seed changes the sampled ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from resnet_probe.models.checkpoints import save_checkpoint
from resnet_probe.models.load import load_model
from resnet_probe.plugins import discover

from .cli.helpers import run_cli

TINY = ("--random-init", "--dataset", "digits", "--limit", "16", "--device", "cpu", "--batch-size", "8")
HISTORY = [{"epoch": 1, "iteration": 4, "lr": 0.1, "train_loss": 2.0, "train_error": 0.8,
            "test_loss": 2.1, "test_error": 0.85, "seconds": 0.5}]

# analysis name -> CLI arguments ({ckpt}: a checkpoint with a training history)
COMMANDS: dict[str, tuple[str, ...]] = {
    "evaluate": ("eval", "--model", "resnet20", *TINY),
    "lesion": ("lesion", "--model", "resnet20", *TINY, "--random-k", "1:3", "--samples", "3"),
    "reorder": ("reorder", "--model", "resnet20", *TINY, "--swaps", "1:3", "--samples", "3"),
    "paths": ("paths", "--model", "resnet20"),
    "gradients": ("gradients", "--model", "resnet20", *TINY, "--samples", "4", "--k", "0:5"),
    "response-std": ("std-report", "--model", "resnet20", *TINY),
    "train-curves": ("run", "train-curves", "--model", "resnet20", "--checkpoint", "{ckpt}"),
    "prune": ("prune", "--model", "resnet20", *TINY, "--remove", "2"),  # a command made from its options
}
TIMINGS = ("latency_ms",)  # measured wall-clock times: the one part of a result no seed fixes
SAMPLED = ("lesion", "reorder", "gradients")  # what the seed draws: sets, orders, routes
NO_SEED = ("paths",)  # structure only: nothing to draw, no --seed option


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random ResNet-20 in our format with a one-epoch history."""
    torch.manual_seed(0)
    model = load_model("zoo:resnet20", weights="random").model
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "r20.safetensors", model, "zoo:resnet20",
                           dataset="digits", num_classes=10, preprocessing=None, history=HISTORY)


def _run(capsys: pytest.CaptureFixture[str], name: str, out: Path, seed: int, checkpoint: Path) -> dict:
    args = [a.replace("{ckpt}", str(checkpoint)) for a in COMMANDS[name]]
    if name not in NO_SEED:
        args += ["--seed", str(seed)]
    r = run_cli(capsys, *args, "--out", out)
    assert r.code == 0, r.err
    doc = json.loads((out / "results.json").read_text())
    assert doc["seed"] == (0 if name in NO_SEED else seed) and doc["analysis"] == name
    doc.pop("wall_time_s")
    return _untimed(doc)


def _untimed(doc: object) -> object:
    if isinstance(doc, dict):
        return {k: _untimed(v) for k, v in doc.items() if k not in TIMINGS}
    if isinstance(doc, list):
        return [_untimed(v) for v in doc]
    return doc


def test_every_installed_analysis_has_a_command_here() -> None:
    installed = {p.name for p in discover() if p.analysis is not None}
    assert installed <= set(COMMANDS), sorted(installed - set(COMMANDS))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_same_seed_same_json(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, checkpoint: Path) -> None:
    first = _run(capsys, name, tmp_path / "a", 7, checkpoint)
    second = _run(capsys, name, tmp_path / "b", 7, checkpoint)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert first["result"]  # a real result, not an empty document


@pytest.mark.parametrize("name", SAMPLED)
def test_another_seed_draws_other_samples(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, checkpoint: Path
) -> None:
    a = _run(capsys, name, tmp_path / "a", 7, checkpoint)["result"]
    b = _run(capsys, name, tmp_path / "b", 8, checkpoint)["result"]
    if name == "lesion":
        # the sweep is not sampled; the random k-sets are
        assert [c["deleted"] for c in a["configs"]] == [c["deleted"] for c in b["configs"]]
        assert a["random_k"] != b["random_k"]
    elif name == "reorder":
        assert [c["order"] for c in a["configs"]] != [c["order"] for c in b["configs"]]
    else:
        assert [r["mean_norm"] for r in a["lengths"]] != [r["mean_norm"] for r in b["lengths"]]
        assert [r["samples"] for r in a["lengths"]] == [r["samples"] for r in b["lengths"]] == [4] * 6
