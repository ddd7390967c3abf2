"""Report content dispatch: built-in results find their figures, tables and reading on first ask."""

from __future__ import annotations

import subprocess
import sys

from ..deadlines import deadline

FRESH_S = 30.0  # a fresh interpreter importing torch and the package, a paths result (about 3 s)


def test_reading_before_any_report_was_rendered() -> None:
    # A fresh interpreter: nothing has imported the built-in report modules yet.
    code = """
from resnet_probe.analyses.paths import PathsAnalysis
from resnet_probe.analyses.base import RunContext
from resnet_probe.models.load import load_model
from resnet_probe.executor import Executor
from resnet_probe.results import RunRecord
from resnet_probe.reports import content
loaded = load_model("zoo:resnet20", weights="random")
result = PathsAnalysis().run(RunContext(loaded=loaded, executor=Executor(loaded.topology)))
record = RunRecord(analysis="paths", model={"spec": "zoo:resnet20"}, data={}, seed=0, device="cpu", result={})
lines = content.reading(result, record)
print(len(lines), len(content.figures(result, record)), lines[0])
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=deadline(FRESH_S))
    assert proc.returncode == 0, proc.stderr[-2000:]
    n_lines, n_figures, first = proc.stdout.split(maxsplit=2)
    assert int(n_lines) >= 1 and int(n_figures) >= 1
    assert first.startswith("zoo:resnet20 unravels into 2^9 = 512")


def test_the_first_sentence_says_what_net_the_numbers_are_about() -> None:
    from resnet_probe.reports.content import full_reading

    import resnet_probe as rp

    published = rp.evaluate("resnet20", "cifar10-sample")
    assert full_reading(published, published.run)[0] == (
        "The model: zoo:resnet20 with akamaster/pytorch_resnet_cifar10's published weights (resnet20-12fca82f.th); "
        "the data: 846 examples of cifar10-sample."
    )
    untrained = rp.evaluate(rp.load_model("resnet20", weights="random"), "cifar10-sample", batch_size=512)
    assert "random, untrained weights: every number here describes an untrained network" in full_reading(
        untrained, untrained.run)[0]
