"""The reading answers the question from the numbers, and says so when they do not support the paper."""

from __future__ import annotations

import numpy as np
from resnet_probe.reports.content import reading, tables

from resnet_probe.experiments.grid import QUESTIONS, depth_grid, shortcut_grid
from resnet_probe.experiments.result import ExperimentResult
from resnet_probe.experiments.summary import compare, summarise_cell
from resnet_probe.results import RunRecord

from .helpers import N_TEST, N_TRAIN, make_run

RECORD = RunRecord(analysis="experiment", model={"spec": "depth"}, data=None, seed=0, device="cpu", result={})


def hits(n: int, wrong: int) -> np.ndarray:
    """``n`` images, the first ``wrong`` of them misclassified."""
    return np.arange(n) >= wrong


def depth_result(train_wrong: dict[str, int], test_wrong: dict[str, int], dataset: str = "digits") -> ExperimentResult:
    grid = depth_grid((20, 56))
    runs = [make_run(c.label, c.model, 0, hits(N_TEST, test_wrong[c.model]), hits(N_TRAIN, train_wrong[c.model]))
            for c in grid.cells]
    cells = [summarise_cell(c, [r for r in runs if r.cell == c.label], "depth", dataset, 0.95) for c in grid.cells]
    return ExperimentResult(experiment="depth", question=QUESTIONS["depth"], dataset=dataset, repeats=1,
                            runs=tuple(runs), cells=tuple(cells), comparisons=tuple(compare(grid, runs, 0.95)))


def test_the_papers_answer_when_the_numbers_give_it() -> None:
    result = depth_result({"plain20": 2, "resnet20": 2, "plain56": 30, "resnet56": 1},
                          {"plain20": 3, "resnet20": 25, "plain56": 30, "resnet56": 0})
    first = reading(result, RECORD)[0]
    assert first.startswith("Deeper is not better without shortcuts, and better with them, as He et al. found: ")
    assert "plain-56 trains to higher training error than plain-20 (50.00 % vs 3.33 %" in first
    assert "ResNet-56 beats ResNet-20 on test error (0.00 % vs 62.50 %" in first and "digits recipe" not in first


def test_says_so_when_the_numbers_do_not_support_the_paper() -> None:
    result = depth_result({"plain20": 20, "resnet20": 2, "plain56": 2, "resnet56": 1},
                          {"plain20": 20, "resnet20": 5, "plain56": 3, "resnet56": 9}, dataset="cifar10")
    first = reading(result, RECORD)[0]
    assert first.startswith("These numbers do not support He et al.'s answer")
    assert "the deeper plain net does not train worse; the deeper ResNet is not better." in first
    assert "Plain-56 trains to lower training error than plain-20" in first
    said = reading(result, RECORD)
    assert any(s.startswith("The paper's CIFAR-10 test errors: ResNet-20 8.75 % (He et al. 2015 Table 6") for s in said)
    cells = tables(result, RECORD)[0]
    assert cells.columns[-1] == "paper (CIFAR-10)" and cells.rows[1][-1].startswith("8.75 %")


def test_a_difference_within_chance_is_called_so() -> None:
    result = depth_result({"plain20": 2, "resnet20": 2, "plain56": 30, "resnet56": 1},
                          {"plain20": 3, "resnet20": 4, "plain56": 30, "resnet56": 3})
    first = reading(result, RECORD)[0]
    assert first.startswith("The direction is He et al.'s") and "the ResNets' difference could be chance" in first


def shortcut_result(train_wrong: dict[str, int], test_wrong: dict[str, int]) -> ExperimentResult:
    """Depth 20; nets not named get 1 training and 2 test images wrong."""
    grid = shortcut_grid(20)
    runs = [make_run(c.label, c.model, 0, hits(N_TEST, test_wrong.get(c.model, 2)),
                     hits(N_TRAIN, train_wrong.get(c.model, 1)), depth=20) for c in grid.cells]
    cells = [summarise_cell(c, [r for r in runs if r.cell == c.label], "shortcut", "digits", 0.95) for c in grid.cells]
    return ExperimentResult(experiment="shortcut", question=QUESTIONS["shortcut"], dataset="digits", repeats=1,
                            runs=tuple(runs), cells=tuple(cells), comparisons=tuple(compare(grid, runs, 0.95)))


def test_the_shortcut_reading_names_the_variants_that_did_not_fit_at_the_references_budget() -> None:
    said = reading(shortcut_result({"resnet20_exclusive_gating": 30, "resnet20_const_scaling": 12},
                                   {"resnet20_exclusive_gating": 25, "resnet20_const_scaling": 10}), RECORD)
    unfit = next(s for s in said if s.startswith("Not fitted by this recipe"))
    assert "exclusive gating" in unfit and "(50.00 % training error)" in unfit and "(20.00 % training error)" in unfit
    assert unfit.startswith("Not fitted by this recipe, where the original unit is (1.67 % training error): ")
    assert "20 to 80 epochs" in unfit
    assert any("Significantly worse than the original unit: " in s and "exclusive gating" in s for s in said)
    assert not any("has not fitted its training set" in s for s in said)


def test_an_unfitted_original_unit_makes_the_shortcut_comparisons_uninformative() -> None:
    said = reading(shortcut_result({"resnet20_b": 40, "resnet20_exclusive_gating": 30},
                                   {"resnet20_b": 28, "resnet20_exclusive_gating": 25}), RECORD)
    doubt = next(s for s in said if "has not fitted its training set" in s)
    assert doubt.startswith("The original unit (") and "(66.67 % training error)" in doubt
    assert "The digits recipe is 2 iterations" in doubt
    assert not any(s.startswith("Not fitted by this recipe") for s in said)
