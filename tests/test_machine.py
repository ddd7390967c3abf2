"""A reduced precision the CPU only emulates is said before the run, and results.json records the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnet_probe import machine, runner

from .cli.helpers import run_cli

AVX2_ONLY = {"name": "AMD EPYC 7B13 64-Core Processor", "cpus": 2, "flags": ["avx2"]}
SAPPHIRE = {"name": "Intel(R) Xeon(R) Platinum 8480+", "cpus": 2, "flags": ["avx2", "avx512f", "avx512_bf16",
                                                                            "amx_bf16", "amx_tile", "avx512_fp16"]}


def test_native_by_the_flags() -> None:
    assert not machine.native("bf16", AVX2_ONLY) and machine.native("bf16", SAPPHIRE)
    assert not machine.native("fp16", AVX2_ONLY) and machine.native("fp16", SAPPHIRE)
    assert machine.native("fp32", AVX2_ONLY)
    assert machine.precision_warning("bf16", SAPPHIRE) is None
    line = machine.precision_warning("bf16", AVX2_ONLY)
    assert line is not None and "AMD EPYC 7B13" in line and "AVX512-BF16 or AMX-BF16" in line and "\n" not in line


def test_this_machine_reads_its_own_flags() -> None:
    info = machine.cpu()
    assert info["name"] and set(info["flags"]) <= set(machine.FLAGS)


def test_the_cli_says_so_before_running_and_records_the_cpu(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(machine, "cpu", lambda: AVX2_ONLY)
    monkeypatch.setattr(runner, "cpu", lambda: AVX2_ONLY)
    monkeypatch.setattr(runner, "native", lambda precision: machine.native(precision, AVX2_ONLY))
    out = tmp_path / "run"
    r = run_cli(capsys, "evaluate", "--model", "resnet20", "--dataset", "cifar10-sample", "--limit", "32",
                "--device", "cpu", "--precision", "bf16", "--out", str(out))
    assert r.code == 0, r.err
    assert "--precision bf16 on this CPU (AMD EPYC 7B13 64-Core Processor) has no AVX512-BF16" in r.err
    doc = json.loads((out / "results.json").read_text())
    assert doc["extra"]["cpu"] == AVX2_ONLY | {"native": False}
