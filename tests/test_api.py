"""The Python face: ``import resnet_probe as rp`` drives the same analyses the CLI runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

import resnet_probe as rp
from resnet_probe.errors import OutputError
from resnet_probe.models.loaded import LoadedModel


@pytest.fixture(scope="module")
def resnet20() -> LoadedModel:
    return rp.load_model("resnet20")  # the shipped akamaster weights, no download


def test_lesion_on_the_shipped_resnet20_and_sample(resnet20, tmp_path: Path) -> None:
    data = rp.load_data("cifar10-sample")
    before = {k: v.clone() for k, v in resnet20.model.state_dict().items()}
    result = rp.lesion(resnet20, data)
    assert (result.baseline.correct, result.baseline.n) == (776, 846)
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["kind"]) == ["baseline"] + ["set"] * 9
    assert frame.loc[0, "correct"] == 776 and frame["deleted"].tolist()[1:] == [str(i) for i in range(9)]
    assert all(torch.equal(before[k], v) for k, v in resnet20.model.state_dict().items())

    out = result.save(tmp_path / "run")
    doc = json.loads((out / "results.json").read_text())
    assert doc["analysis"] == "lesion" and doc["result"]["baseline"]["correct"] == 776
    assert doc["model"]["weights"] == "akamaster" and doc["data"]["dataset"] == "cifar10-sample"
    assert pd.read_csv(out / "results.csv")["correct"].iloc[0] == 776
    assert (out / "report.html").read_text().count("<svg") >= 1
    assert sorted(p.suffix for p in (out / "figures").iterdir()) == [".pdf", ".svg"]
    with pytest.raises(OutputError, match="--force"):
        result.save(tmp_path / "run")


def test_results_render_inline_in_a_notebook(resnet20) -> None:
    html = rp.paths(resnet20)._repr_html_()
    assert "<svg" in html and "resnet-probe" in html


def test_run_takes_any_installed_analysis_by_name(resnet20) -> None:
    result = rp.run("evaluate", resnet20, rp.load_data("cifar10-sample"), batch_size=128)
    assert (result.correct, result.n) == (776, 846)
    assert result.run is not None and result.run.options == {}


def test_a_spec_string_and_a_data_set_name_work_too() -> None:
    result = rp.evaluate("resnet56", "cifar10-sample")
    assert (result.correct, result.n) == (789, 846)
