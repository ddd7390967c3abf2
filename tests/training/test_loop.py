"""Training: the recipes' numbers, digits accuracy, the cache, and exact resumption."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from resnet_probe.data import load_data
from resnet_probe.errors import DeviceError, ProbeError
from resnet_probe.executor import Executor, Plan
from resnet_probe.models import cache
from resnet_probe.models.checkpoints import read_checkpoint
from resnet_probe.models.load import load_model
from resnet_probe.models.zoo.families import DENSENET
from resnet_probe.models.zoo.identity_mappings import VARIANTS
from resnet_probe.scoring import score_plans
from resnet_probe.training.loop import TrainStatus, random_crop, train_model
from resnet_probe.training.recipe import DIGITS_VARIANT_EPOCHS, choose_recipe, model_recipe
from resnet_probe.training.state import resume_path


@pytest.fixture(scope="module")
def tiny():
    """64 training and 32 test digits: four steps of 16 per epoch."""
    return load_data("digits", split="train", limit=64), load_data("digits", limit=32)


def test_he_recipe_schedule_and_warmup() -> None:
    r = choose_recipe("cifar10", 50_000, depth=56)
    assert (r.lr, r.iters, r.batch_size, r.milestones) == (0.1, 64_000, 128, (32_000, 48_000))
    assert (r.momentum, r.weight_decay, r.augment, r.warmup_iters) == (0.9, 1e-4, "crop-flip", 0)
    assert [r.lr_at(i) for i in (0, 31_999, 32_000, 47_999, 48_000, 63_999)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )
    assert r.epochs(50_000) == 164  # 391 steps per epoch, the last epoch partial
    deep = choose_recipe("cifar10", 50_000, depth=110)
    assert [deep.lr_at(i) for i in (0, 399, 400)] == pytest.approx([0.01, 0.01, 0.1])
    short = choose_recipe("cifar100", 50_000, depth=20, epochs=10, lr=0.05)
    assert (short.iters, short.milestones, short.lr) == (3_910, (1_955, 2_932), 0.05)


def test_digits_recipe_is_short_cosine_without_flips() -> None:
    r = choose_recipe("digits", 1_297, depth=20)
    assert (r.name, r.schedule, r.augment, r.warmup_iters) == ("digits", "cosine", "crop", 0)
    assert (r.batch_size, r.iters, r.epochs(1_297), r.lr) == (32, 205, 5, 0.02)  # 41 steps an epoch
    lrs = [r.lr_at(i) for i in range(r.iters)]
    assert lrs[0] == 0.02 and all(a > b for a, b in zip(lrs, lrs[1:], strict=False)) and lrs[-1] < 1e-5
    assert r.lr_at(41) == pytest.approx(0.01 * (1 + math.cos(math.pi / 5)))
    # No warm-up below the bottleneck depths: at 0.02 resnet56 and resnet110 train without one (measured).
    assert choose_recipe("digits", 1_297, depth=110).lr_at(0) == pytest.approx(0.02)


def test_digits_recipe_of_bottleneck_depths_warms_up_then_runs_high_and_longer() -> None:
    r = choose_recipe("digits", 1_297, depth=164)
    assert (r.iters, r.epochs(1_297), r.lr, r.warmup_iters, r.warmup_lr) == (410, 10, 0.05, 41, pytest.approx(0.005))
    assert [r.lr_at(i) for i in (0, 40)] == [pytest.approx(0.005)] * 2
    assert r.lr_at(41) == pytest.approx(0.025 * (1 + math.cos(math.pi * 41 / 410)))
    assert choose_recipe("digits", 1_297, depth=1001).warmup_iters == 41
    # overrides still win; a run of one epoch has no room for a warm-up epoch
    short = choose_recipe("digits", 1_297, depth=164, epochs=1, lr=0.1)
    assert (short.iters, short.lr, short.warmup_iters) == (41, 0.1, 0)


def test_densenets_take_the_long_digits_recipe_at_any_depth_and_the_original_bottleneck_longer() -> None:
    dense = model_recipe(load_model("densenet40_k12", weights="random"), "digits", 1_297)
    assert (dense.iters, dense.lr, dense.warmup_iters) == (410, 0.05, 41)
    resnet = model_recipe(load_model("resnet20", weights="random"), "digits", 1_297)
    assert (resnet.iters, resnet.lr, resnet.warmup_iters) == (205, 0.02, 0)
    # the original ResNet-164 trains reliably only given four times as long (40 epochs: 96.0 %)
    original = model_recipe(load_model("resnet164", weights="random"), "digits", 1_297)
    twin = model_recipe(load_model("preact_resnet164", weights="random"), "digits", 1_297)
    assert (original.iters, twin.iters, original.lr, original.warmup_iters) == (1_640, 410, 0.05, 41)
    # off digits the family changes nothing: He et al.'s recipe, warm-up by depth only
    assert choose_recipe("cifar10", 50_000, depth=40, family=DENSENET) == choose_recipe("cifar10", 50_000, depth=40)


def test_the_slow_unit_variants_take_more_of_the_short_digits_recipe() -> None:
    assert set(DIGITS_VARIANT_EPOCHS) <= set(VARIANTS)
    for model, epochs in [("resnet20_const_scaling", 20), ("resnet20_bn_after_add", 20),
                          ("resnet56_dropout_shortcut", 40), ("resnet20_exclusive_gating", 80)]:
        r = model_recipe(load_model(model, weights="random"), "digits", 1_297)
        assert (r.iters, r.lr, r.warmup_iters, r.schedule) == (41 * epochs, 0.02, 0, "cosine")
    for model in ("resnet20_shortcut_gating", "resnet20_conv_shortcut", "resnet20_b", "preact_resnet20"):
        assert model_recipe(load_model(model, weights="random"), "digits", 1_297).iters == 205
    # overrides still win; off digits the variant changes nothing
    assert choose_recipe("digits", 1_297, variant="exclusive_gating", epochs=5).iters == 205
    cifar = choose_recipe("cifar10", 50_000, depth=20, variant="const_scaling")
    assert cifar == choose_recipe("cifar10", 50_000, depth=20)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"epochs": 2, "iters": 5}, "exclude each other"), ({"epochs": 0}, "--epochs 0"), ({"lr": -1.0}, "--lr -1.0")],
)
def test_recipe_rejects_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ProbeError, match=message):
        choose_recipe("digits", 100, **kwargs)


def test_random_crop_is_a_window_of_the_pixel_zero_padded_image() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 8, 8, generator=gen)
    fill = torch.tensor([-1.0, -2.0, -3.0]).view(1, 3, 1, 1)
    out = random_crop(x, torch.Generator().manual_seed(1), fill, pad=2)
    padded = torch.nn.functional.pad(x - fill, (2, 2, 2, 2)) + fill
    for i in range(6):
        windows = [padded[i, :, a : a + 8, b : b + 8] for a in range(5) for b in range(5)]
        assert sum(torch.equal(out[i], w) for w in windows) >= 1
    assert not torch.equal(out, x)  # 6 images, 25 offsets: some must move


def test_digits_resnet20_reaches_95_percent_into_the_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RESNET_PROBE_HOME", str(tmp_path))
    train, test = load_data("digits", split="train"), load_data("digits")
    events: list[str] = []
    result = train_model("resnet20", train, test, seed=0, device="cpu", progress=lambda s: events.append(s.event))
    assert result.checkpoint == cache.trained_checkpoint_path("zoo:resnet20", "digits")
    assert result.checkpoint.is_file() and not resume_path(result.checkpoint).exists()
    assert result.test_accuracy is not None and result.test_accuracy >= 0.95
    epochs = result.recipe.epochs(len(train))
    assert len(result.history) == epochs and events.count("epoch") == epochs
    assert events[0] == "start" and events[-1] == "end" and events.count("step") == result.iterations
    assert [h["iteration"] for h in result.history][-1] == result.recipe.iters
    # Found without a checkpoint path, and it scores what training recorded.
    loaded = load_model("resnet20", dataset="digits")
    assert loaded.checkpoint == str(result.checkpoint)
    assert loaded.metadata["history"] == list(result.history)
    assert loaded.metadata["train_args"]["schedule"] == "cosine"
    (score,) = score_plans(Executor(loaded.topology), test, [Plan()], preprocessing=loaded.preprocessing)
    assert score.accuracy == pytest.approx(result.test_accuracy, abs=1e-9)
    assert score.loss == pytest.approx(result.test_loss, rel=1e-4)


def test_interrupted_and_resumed_run_ends_bit_identical(tiny, tmp_path: Path) -> None:
    train, test = tiny
    settings = dict(epochs=2, batch_size=16, seed=3, device="cpu")
    straight = train_model("resnet20", train, test, checkpoint_path=tmp_path / "a.safetensors", **settings)

    def stop_after_first_epoch(s: TrainStatus) -> None:
        if s.event == "epoch" and s.epoch == 0:
            raise KeyboardInterrupt

    target = tmp_path / "b.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train_model("resnet20", train, test, checkpoint_path=target, progress=stop_after_first_epoch, **settings)
    assert not target.exists() and resume_path(target).is_file()
    resumed = train_model("resnet20", train, test, checkpoint_path=target, resume=True, **settings)
    assert resumed.resumed_from_epoch == 1 and resumed.iterations == straight.iterations == 8
    a, b = read_checkpoint(straight.checkpoint).state_dict, read_checkpoint(target).state_dict
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in straight.history]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history] == strip
    # A different seed really trains differently (the equality above is not vacuous).
    other = train_model("resnet20", train, test, checkpoint_path=tmp_path / "c.safetensors", **(settings | {"seed": 4}))
    c = read_checkpoint(other.checkpoint).state_dict
    assert not torch.equal(a["linear.weight"], c["linear.weight"])


def test_resume_refuses_a_missing_or_different_run(tiny, tmp_path: Path) -> None:
    train, test = tiny
    target = tmp_path / "r.safetensors"
    with pytest.raises(ProbeError, match="nothing to resume"):
        train_model("resnet20", train, test, checkpoint_path=target, resume=True, iters=2, device="cpu")

    def stop(s: TrainStatus) -> None:
        if s.event == "epoch":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(
            "resnet20", train, test, checkpoint_path=target, epochs=2, batch_size=32, progress=stop, device="cpu"
        )
    with pytest.raises(ProbeError, match="started with lr=0.02, this run has lr=0.2"):
        train_model(
            "resnet20", train, test, checkpoint_path=target, epochs=2, batch_size=32, lr=0.2, resume=True, device="cpu"
        )
    with pytest.raises(ProbeError, match="started with seed=0, this run has seed=1"):
        train_model(
            "resnet20", train, test, checkpoint_path=target, epochs=2, batch_size=32, seed=1, resume=True, device="cpu"
        )


@pytest.mark.parametrize("name", ["plain20", "preact_resnet20", "resnet20_b"])
def test_every_kind_of_zoo_net_trains_and_loads(name: str, tiny, tmp_path: Path) -> None:
    train, test = tiny
    result = train_model(
        name, train, test, iters=2, batch_size=16, device="cpu", checkpoint_path=tmp_path / "m.safetensors"
    )
    assert result.iterations == 2 and len(result.history) == 1
    assert result.history[0]["train_loss"] > 0 and 0 <= result.history[0]["test_error"] <= 1
    loaded = load_model(name, checkpoint=result.checkpoint)
    assert loaded.metadata["dataset"] == "digits" and loaded.num_classes == 10


def test_a_given_recipe_replaces_the_models_own(tiny, tmp_path: Path) -> None:
    train, test = tiny
    recipe = choose_recipe("digits", len(train), iters=3, lr=0.03, batch_size=16)  # not resnet20's own
    result = train_model("resnet20", train, test, recipe=recipe, device="cpu", checkpoint_path=tmp_path / "r")
    assert result.recipe == recipe and result.iterations == 3
    with pytest.raises(ProbeError, match="not both"):
        train_model("resnet20", train, test, recipe=recipe, lr=0.1, device="cpu", checkpoint_path=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_fp16_training_is_gpu_only(tiny, tmp_path: Path) -> None:
    train, test = tiny
    with pytest.raises(DeviceError, match="--precision fp16"):
        train_model("resnet20", train, test, iters=1, device="cpu", precision="fp16", checkpoint_path=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_bf16_training_on_the_cpu_tracks_fp32_and_keeps_fp32_weights(tiny, tmp_path: Path) -> None:
    train, test = tiny
    runs = {
        p: train_model(
            "resnet20", train, test, iters=3, batch_size=16, device="cpu", precision=p, checkpoint_path=tmp_path / p
        )
        for p in ("fp32", "bf16")
    }
    fp32, bf16 = runs["fp32"].history[-1], runs["bf16"].history[-1]
    assert bf16["train_loss"] != fp32["train_loss"]  # really ran in another precision
    assert bf16["train_loss"] == pytest.approx(fp32["train_loss"], rel=0.05)
    assert bf16["test_loss"] == pytest.approx(fp32["test_loss"], rel=0.1)
    loaded = load_model("resnet20", checkpoint=runs["bf16"].checkpoint)
    assert loaded.metadata["train_args"]["precision"] == "bf16"
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}


@pytest.mark.gpu
def test_gpu_training_uses_bf16_and_channels_last(tiny, tmp_path: Path) -> None:
    train, test = tiny
    result = train_model("resnet20", train, test, iters=4, batch_size=16, device="cuda", checkpoint_path=tmp_path / "g")
    loaded = load_model("resnet20", checkpoint=result.checkpoint)
    assert loaded.metadata["train_args"]["precision"] in ("bf16", "fp16")
    assert result.history[-1]["test_error"] is not None
