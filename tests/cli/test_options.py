"""The shared options, declared once and injected into every analysis command as ``Common``."""

from __future__ import annotations

import pytest
from resnet_probe.cli import options as o

from resnet_probe.settings import RunSettings

from .helpers import run_cli


def test_every_common_field_is_an_option_of_the_analysis_commands(capsys: pytest.CaptureFixture[str]) -> None:
    flags = {"--model", "--checkpoint", "--dataset", "--data", "--limit", "--batch-size", "--device", "--seed",
             "--out", "--force", "--title", "--random-init", "--pretrained", "--download", "--precision",
             "--split", "--compile", "--workers", "--channels-last"}
    for command, extra in [("lesion", {"--resume", "--random-k"}), ("reorder", {"--resume", "--swaps"}),
                           ("gradients", {"--resume", "--k"}), ("eval", set()), ("run", {"--set"})]:
        text = run_cli(capsys, command, "--help").out
        missing = {f for f in flags | extra if f not in text}
        assert not missing, (command, missing)
    assert "--resume" not in run_cli(capsys, "eval", "--help").out


def test_command_receives_the_values_given(capsys: pytest.CaptureFixture[str], monkeypatch, tmp_path) -> None:
    seen: list[RunSettings] = []

    def fake_run(analysis, settings, options, compare=(), progress=None):
        seen.append(settings)
        raise SystemExit(0)

    monkeypatch.setattr("resnet_probe.runner.run_analysis", fake_run)
    run_cli(capsys, "gradients", "-m", "resnet20", "--samples", "3", "--workers", "2", "--compile", "--limit", "9",
            "--out", tmp_path / "g", "--no-train")
    run_cli(capsys, "gradients", "-m", "resnet20", "--channels-last", "--random-init")
    run_cli(capsys, "gradients", "-m", "resnet20", "--no-channels-last", "--random-init")
    settings, on, off = seen
    assert (settings.model, settings.workers, settings.compile, settings.limit) == ("resnet20", 2, True, 9)
    assert (settings.channels_last, on.channels_last, off.channels_last) == (None, True, False)
    assert (settings.train_missing, on.train_missing) == (False, True)
    assert settings.batch_size == 128 and settings.out == tmp_path / "g"  # the command's own default batch


def test_unknown_omission_refused() -> None:
    with pytest.raises(ValueError):
        o.with_common(omit=("model",))
    with pytest.raises(ValueError):
        o.with_common(omit=("nonsense",))


def test_flags_show_no_value_placeholder_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    from resnet_probe.cli.app import COMMANDS

    for command in [None, *COMMANDS, "eval", "std-report", "train-report"]:
        text = run_cli(capsys, *([command] if command else []), "--help").out
        assert "--help" in text and "<bool>" not in text, command
    assert "<str>" in run_cli(capsys, "lesion", "--help").out  # options that take a value still show its type
