"""The layout of a run's model copy: timed once per model and machine, cached, recorded in results.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from resnet_probe.data import load_data
from resnet_probe.layout_probe import CANDIDATES, MIN_IMAGES, choose_layout, layout_name
from resnet_probe.models.load import load_model
from tests.cli.helpers import run_cli


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no cached layouts (the session's home is shared by every test)."""
    monkeypatch.setenv("RESNET_PROBE_HOME", str(tmp_path / "home"))


def _layout(capsys: pytest.CaptureFixture[str], out: Path, *args: str) -> dict:
    run = run_cli(capsys, "eval", "--model", "resnet20", "--random-init", "--device", "cpu", "--out", str(out),
                  *args)
    assert run.code == 0, run.err
    return json.loads((out / "results.json").read_text())["extra"]["layout"]


def test_a_run_records_the_timed_layout_and_the_next_reuses_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = _layout(capsys, tmp_path / "a", "--dataset", "cifar10-sample")
    assert first["from"] == "probe"
    timed = first["seconds_per_forward"]
    assert set(timed) == {layout_name(c, f) for c, f in CANDIDATES} and all(v > 0 for v in timed.values())
    assert first["layout"] == min(timed, key=timed.__getitem__)  # the fastest one is kept
    second = _layout(capsys, tmp_path / "b", "--dataset", "cifar10-sample")
    assert second == first | {"from": "cache"}


def test_small_runs_and_the_option_are_not_probed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    small = _layout(capsys, tmp_path / "a", "--dataset", "cifar10-sample", "--limit", "64")
    assert small["from"] == f"default (fewer than {MIN_IMAGES} images: not probed)"
    assert "seconds_per_forward" not in small
    forced = _layout(capsys, tmp_path / "b", "--dataset", "cifar10-sample", "--no-channels-last")
    assert (forced["from"], forced["channels_last"]) == ("option", False)


def test_a_cached_choice_is_reused_without_timing_anything() -> None:
    loaded = load_model("zoo:resnet20", weights="random")
    data = load_data("cifar10-sample")
    built: list[bool] = []

    def build(model: torch.nn.Module, nhwc: bool):  # the executor each candidate would run
        from resnet_probe.adapters import build_topology
        from resnet_probe.executor import Executor

        built.append(nhwc)
        return Executor(build_topology(model), "cpu", channels_last=nhwc)

    kwargs = dict(fold=True, channels_last=None, build=build)
    probed = choose_layout(loaded, torch.device("cpu"), "fp32", data, data.default_preprocessing, **kwargs)
    assert probed.source == "probe" and len(built) == 4
    again = choose_layout(loaded, torch.device("cpu"), "fp32", data, data.default_preprocessing, **kwargs)
    assert again.source == "cache" and len(built) == 4  # nothing built, nothing timed
    assert (again.channels_last, again.folded, again.seconds) == (probed.channels_last, probed.folded, probed.seconds)
    unfolded = choose_layout(loaded, torch.device("cpu"), "fp32", data, data.default_preprocessing,
                             fold=False, channels_last=None, build=build)
    assert unfolded.source == "probe" and not unfolded.folded and len(built) == 6  # its own key, 2 candidates
