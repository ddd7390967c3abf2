"""Runs over the cache: keys, a second run trains nothing, a changed recipe retrains, a killed grid continues."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from resnet_probe.data import load_data
from resnet_probe.errors import CheckpointError
from resnet_probe.experiments import study
from resnet_probe.experiments.grid import depth_grid, shortcut_grid
from resnet_probe.experiments.result import MACHINE_FIELDS, ExperimentResult
from resnet_probe.experiments.runs import TrainOptions, cache_key, data_identity, grid_recipe, run_folder
from resnet_probe.experiments.study import ExperimentSettings
from resnet_probe.training import recipe as recipes
from resnet_probe.training.recipe import choose_recipe
from resnet_probe.training.state import resume_path

OPTIONS = TrainOptions(batch_size=16, device="cpu")  # 32 training images: 2 steps an epoch


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RESNET_PROBE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(recipes, "DIGITS_EPOCHS", 1)
    return tmp_path / "home"


@pytest.fixture(scope="module")
def splits():
    return load_data("digits", split="train", limit=32), load_data("digits", limit=24)


def numbers(result: ExperimentResult) -> list[dict]:
    """Each run without what depends on the machine or on where the cache is."""
    rows = []
    for run in result.runs:
        row = {k: v for k, v in asdict(run).items() if k not in MACHINE_FIELDS}
        row["history"] = [{k: v for k, v in h.items() if k != "seconds"} for h in row["history"]]
        rows.append(row)
    return rows


def test_cache_key_changes_with_model_data_recipe_and_seed(splits) -> None:
    train, test = splits
    data = data_identity(train, test)
    r = choose_recipe("digits", len(train), batch_size=16)
    key = cache_key("resnet20", data, r, 0)
    assert key.startswith("s0-") and key == cache_key("zoo:resnet20", data, r, 0)
    others = {
        cache_key("plain20", data, r, 0),
        cache_key("resnet20", data, r, 1),
        cache_key("resnet20", data | {"train_n": 31}, r, 0),
        cache_key("resnet20", data, choose_recipe("digits", len(train), batch_size=16, lr=0.03), 0),
        cache_key("resnet20", data, choose_recipe("digits", len(train), batch_size=16, epochs=2), 0),
    }
    assert key not in others and len(others) == 5
    assert run_folder("digits", "resnet20", key).parts[-4:] == ("experiments", "digits", "resnet20", key)


def test_second_run_trains_nothing_and_a_changed_recipe_retrains(home: Path, splits, monkeypatch) -> None:
    train, test = splits
    grid = depth_grid((20,))
    first, done = study.run_experiment(grid, train, test, ExperimentSettings(repeats=2, options=OPTIONS))
    assert (done.trained, done.cached) == (4, 0)
    assert [(r.model, r.seed, r.iterations, r.epochs) for r in first.runs] == [
        ("plain20", 0, 2, 1), ("plain20", 1, 2, 1), ("resnet20", 0, 2, 1), ("resnet20", 1, 2, 1)]
    assert [r.residual for r in first.runs] == [False, False, True, True]
    assert first.runs[0].test_n == 24 and first.runs[0].train_n == 32 and first.runs[0].flops > 0
    again, done = study.run_experiment(grid, train, test, ExperimentSettings(repeats=2, options=OPTIONS))
    assert (done.trained, done.cached) == (0, 4) and again == first
    more, done = study.run_experiment(grid, train, test, ExperimentSettings(repeats=3, options=OPTIONS))
    assert (done.trained, done.cached) == (2, 4) and more.runs[:2] == first.runs[:2]
    monkeypatch.setattr(recipes, "DIGITS_EPOCHS", 2)  # a longer recipe is another run
    longer, done = study.run_experiment(grid, train, test, ExperimentSettings(options=OPTIONS))
    assert (done.trained, done.cached) == (2, 0) and [r.epochs for r in longer.runs] == [2, 2]
    assert longer.runs[0].key != first.runs[0].key
    with pytest.raises(CheckpointError, match=r"--no-train: 2 of 4 runs .* \(plain32 seed 0, resnet32 seed 0\)"):
        study.run_experiment(depth_grid((20, 32)), train, test, ExperimentSettings(
            options=TrainOptions(batch_size=16, device="cpu", epochs=2), train_missing=False))


def test_killed_grid_continues_with_what_is_missing(home: Path, splits, monkeypatch, tmp_path: Path) -> None:
    train, test = splits
    grid = depth_grid((20,))
    calls: list[str] = []
    real = study.train_and_measure

    def dies_on_the_third(model, seed, *args, **kwargs):
        calls.append(f"{model}/{seed}")
        if len(calls) == 3:
            raise KeyboardInterrupt  # the kill, between two runs
        return real(model, seed, *args, **kwargs)

    monkeypatch.setattr(study, "train_and_measure", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        study.run_experiment(grid, train, test, ExperimentSettings(repeats=2, options=OPTIONS))
    monkeypatch.setattr(study, "train_and_measure", real)
    resumed, done = study.run_experiment(grid, train, test, ExperimentSettings(repeats=2, options=OPTIONS))
    assert (done.trained, done.cached) == (2, 2)
    monkeypatch.setenv("RESNET_PROBE_HOME", str(tmp_path / "fresh"))
    whole, _ = study.run_experiment(grid, train, test, ExperimentSettings(repeats=2, options=OPTIONS))
    assert numbers(resumed) == numbers(whole)


def test_run_killed_mid_training_resumes_from_its_last_epoch(home: Path, splits, monkeypatch, tmp_path) -> None:
    train, test = splits
    monkeypatch.setattr(recipes, "DIGITS_EPOCHS", 2)
    grid = depth_grid((20,))

    class Kill(Exception):
        pass

    def dies_after_an_epoch(_title: str):
        import contextlib

        @contextlib.contextmanager
        def shown():
            def report(status):
                if status.event == "epoch" and status.epoch == 0:
                    raise Kill
            yield report

        return shown()

    with pytest.raises(Kill):
        study.run_experiment(grid, train, test, ExperimentSettings(options=OPTIONS), progress=dies_after_an_epoch)
    plain = next((home / "experiments" / "digits" / "plain20").iterdir())
    assert resume_path(plain / "model.safetensors").is_file() and not (plain / "run.json").exists()
    resumed, done = study.run_experiment(grid, train, test, ExperimentSettings(options=OPTIONS))
    assert done.trained == 2 and not resume_path(plain / "model.safetensors").exists()
    assert resumed.runs[0].train_images_per_s is not None  # the second epoch was timed
    monkeypatch.setenv("RESNET_PROBE_HOME", str(tmp_path / "fresh"))
    whole, _ = study.run_experiment(grid, train, test, ExperimentSettings(options=OPTIONS))
    assert numbers(resumed) == numbers(whole)  # bit-identical weights: the same per-image correctness


def test_every_net_of_a_grid_trains_with_the_longest_recipe_any_of_them_needs() -> None:
    train = load_data("digits", split="train")
    # DenseNet-BC-100 (the blocks experiment's DenseNet at ResNet-56's size) needs the long digits recipe
    mixed = grid_recipe(["resnet56", "densenet_bc100_k12"], train, TrainOptions())
    assert (mixed.iters, mixed.lr, mixed.warmup_iters) == (410, 0.05, 41)
    alike = grid_recipe(["plain20", "resnet20"], train, TrainOptions())
    assert alike == choose_recipe("digits", len(train), depth=20)
    # on CIFAR-10 He et al.'s warm-up of the 110-layer net is given to the whole grid
    cifar = load_data("cifar10-sample")
    assert grid_recipe(["resnet20", "resnet110"], cifar, TrainOptions()).warmup_iters == 400


def test_a_shortcut_grid_measures_the_slow_variants_at_their_references_budget() -> None:
    train = load_data("digits", split="train")
    models = [c.model for c in shortcut_grid(20).cells]
    assert "resnet20_exclusive_gating" in models  # 80 epochs on its own (`train`)
    assert grid_recipe(models, train, TrainOptions()) == choose_recipe("digits", len(train), depth=20)
    assert grid_recipe(models, train, TrainOptions(epochs=3)).iters == 123
