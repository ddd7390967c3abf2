"""Repeats' statistics and paired tests, on runs whose per-image correctness is made up."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from resnet_probe.experiments.grid import depth_grid
from resnet_probe.experiments.result import ExperimentRun
from resnet_probe.experiments.summary import compare, error_interval, summarise_cell
from resnet_probe.stats import holm, mcnemar_exact, paired_counts, unpack_bits, wilson_interval

from .helpers import N_TEST, N_TRAIN, make_run


@pytest.fixture()
def runs() -> list[ExperimentRun]:
    rng = np.random.default_rng(0)
    made = []
    for cell, model, p in (("plain-20", "plain20", 0.6), ("ResNet-20", "resnet20", 0.9)):
        for seed in (0, 1, 2):
            made.append(make_run(cell, model, seed, rng.random(N_TEST) < p, rng.random(N_TRAIN) < p))
    return made


def test_error_interval_is_one_minus_the_accuracy_interval() -> None:
    lo, hi = wilson_interval(30, 40)
    assert error_interval(30, 40, 0.95) == pytest.approx((1 - hi, 1 - lo))


def test_cell_mean_std_best_and_pooled_interval(runs: list[ExperimentRun]) -> None:
    grid = depth_grid((20,))
    plain = [r for r in runs if r.cell == "plain-20"]
    cell = summarise_cell(grid.cells[0], plain, "depth", "digits", 0.95)
    tests = [r.test_error for r in plain]
    assert (cell.repeats, cell.seeds) == (3, (0, 1, 2))
    assert cell.test_error_mean == pytest.approx(statistics.fmean(tests))
    assert cell.test_error_std == pytest.approx(statistics.stdev(tests))
    assert cell.test_error_best == min(tests)
    assert cell.train_error_std == pytest.approx(statistics.stdev(r.train_error for r in plain))
    correct = sum(round((1 - r.test_error) * N_TEST) for r in plain)
    assert cell.test_ci == pytest.approx(error_interval(correct, 3 * N_TEST, 0.95))
    assert cell.train_images_per_s == pytest.approx(11.0)
    assert cell.paper_error is None  # papers are quoted on CIFAR-10 only
    one = summarise_cell(grid.cells[0], plain[:1], "depth", "digits", 0.95)
    assert one.test_error_std is None and one.test_ci == plain[0].test_ci
    resnet = summarise_cell(grid.cells[1], [r for r in runs if r.cell == "ResNet-20"], "depth", "cifar10", 0.95)
    assert resnet.paper_error == 8.75 and resnet.paper == "8.75 % (He et al. 2015 Table 6, ResNet-20)"


def test_paired_tests_sum_discordant_images_over_seed_pairs_and_holm_adjust(runs: list[ExperimentRun]) -> None:
    grid = depth_grid((20,))
    tests = compare(grid, runs, 0.95)
    assert [(t.a, t.b, t.split) for t in tests] == [("ResNet-20", "plain-20", s) for s in ("test", "train")]

    a_only = b_only = 0
    for seed in (0, 1, 2):
        ra = next(r for r in runs if r.cell == "ResNet-20" and r.seed == seed)
        rb = next(r for r in runs if r.cell == "plain-20" and r.seed == seed)
        da, db = paired_counts(unpack_bits(ra.test_hits, N_TEST), unpack_bits(rb.test_hits, N_TEST))
        a_only, b_only = a_only + da, b_only + db
    test = tests[0]
    assert (test.a_only, test.b_only, test.pairs) == (a_only, b_only, 3)
    assert test.p == pytest.approx(mcnemar_exact(a_only, b_only))
    assert [t.p_holm for t in tests] == pytest.approx(holm([t.p for t in tests]))
    assert test.a_better and test.significant == (test.p_holm < 0.05)
    # A seed without its partner is left out of the pairs.
    fewer = compare(grid, [r for r in runs if not (r.cell == "plain-20" and r.seed == 2)], 0.95)
    assert fewer[0].pairs == 2
