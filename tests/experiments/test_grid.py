"""The experiments' grids: which zoo nets form the cells, which pairs are tested, what is skipped or refused."""

from __future__ import annotations

import pytest

from resnet_probe.errors import ProbeError
from resnet_probe.experiments.grid import VARIANTS, blocks_grid, build_grid, depth_grid, shortcut_grid
from resnet_probe.models.registry import get_entry


def test_depth_grid_pairs_residual_with_plain_and_deeper_with_shallower() -> None:
    grid = depth_grid((32, 20, 56))
    assert [c.model for c in grid.cells] == ["plain20", "resnet20", "plain32", "resnet32", "plain56", "resnet56"]
    assert [c.kind for c in grid.cells] == ["plain", "residual"] * 3
    assert grid.pairs == (
        ("ResNet-20", "plain-20"), ("ResNet-32", "plain-32"), ("ResNet-56", "plain-56"),
        ("plain-32", "plain-20"), ("ResNet-32", "ResNet-20"), ("plain-56", "plain-20"), ("ResNet-56", "ResNet-20"),
    )
    assert grid.runs(2, seed=5)[:3] == [(grid.cells[0], 5), (grid.cells[0], 6), (grid.cells[1], 5)]


def test_depth_grid_skips_a_missing_plain_net_and_refuses_a_missing_resnet() -> None:
    grid = depth_grid((20, 1202))  # the zoo has resnet1202 but no plain1202
    assert [c.model for c in grid.cells] == ["plain20", "resnet20", "resnet1202"]
    assert len(grid.skipped) == 1 and "plain1202 is not in the zoo" in grid.skipped[0]
    assert ("ResNet-1202", "ResNet-20") in grid.pairs and not any("plain-1202" in p for p in grid.pairs)
    with pytest.raises(ProbeError, match=r"no basic-block resnet21 .* 20, 32, 44, 56, 110, 1202"):
        depth_grid((20, 21))
    with pytest.raises(ProbeError, match="resnet164"):  # the zoo's resnet164 is a bottleneck net
        depth_grid((164,))


def test_shortcut_grid_has_options_variants_and_preact_against_their_references() -> None:
    grid = shortcut_grid(20)
    names = [c.model for c in grid.cells]
    assert names[:4] == ["plain20", "resnet20", "resnet20_b", "resnet20_c"]
    assert names[4:-1] == [f"resnet20_{v}" for v, _ in VARIANTS] and names[-1] == "preact_resnet20"
    assert all(get_entry(c.model).params == c.params for c in grid.cells)
    by_model = {c.model: c.label for c in grid.cells}
    # plain, B and C against option A; every variant and full pre-activation against B, the "original" unit
    assert (by_model["plain20"], by_model["resnet20"]) in grid.pairs
    assert (by_model["resnet20_c"], by_model["resnet20"]) in grid.pairs
    assert (by_model["preact_resnet20"], by_model["resnet20_b"]) in grid.pairs
    assert (by_model["resnet20_dropout_shortcut"], by_model["resnet20_b"]) in grid.pairs
    assert len(grid.pairs) == len(grid.cells) - 1


def test_the_shortcut_experiment_runs_at_110_but_at_56_on_digits() -> None:
    assert build_grid("shortcut").cells[0].model == "plain110"
    assert build_grid("shortcut", dataset="cifar10").cells[0].model == "plain110"
    assert build_grid("shortcut", dataset="digits").cells[0].model == "plain56"
    assert build_grid("shortcut", depth=20, dataset="digits").cells[0].model == "plain20"


def test_blocks_grid_matches_parameters_and_says_what_it_left_out() -> None:
    grid = blocks_grid(56)
    assert [(c.label, c.model) for c in grid.cells] == [
        ("basic residual", "resnet56"), ("pre-activation", "preact_resnet56"),
        ("DenseNet-BC", "densenet_bc100_k12"), ("VoVNet", "vovnet_cifar"),
    ]
    assert all(abs(c.params / grid.cells[0].params - 1) <= 0.25 for c in grid.cells)
    (note,) = grid.skipped
    assert note.startswith("bottleneck: the nearest in the zoo, resnet164 (1.70M parameters), is +100 %")
    wide = blocks_grid(56, match=1.1)
    assert "resnet164" in [c.model for c in wide.cells] and not wide.skipped
    deep = blocks_grid(110)
    assert [c.model for c in deep.cells] == ["resnet110", "resnet164", "preact_resnet110"]
    assert grid.pairs == tuple((c.label, "basic residual") for c in grid.cells[1:])


@pytest.mark.parametrize(
    ("experiment", "kwargs", "message"),
    [
        ("width", {}, "unknown experiment 'width'; valid: depth, shortcut, blocks"),
        ("shortcut", {"depths": (20,)}, "--depths is not an option of `experiment shortcut`"),
        ("depth", {"models": ("resnet20",)}, "--models is not an option of `experiment depth`"),
        ("blocks", {"models": ("resnet20",), "depth": 20}, "--models names the nets itself"),
        ("blocks", {"models": ("resnet21",)}, "unknown zoo model 'resnet21'"),
    ],
)
def test_build_grid_refuses_what_does_not_belong(experiment: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ProbeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_grid(experiment, **kwargs)


def test_named_blocks_keep_the_users_order_and_compare_with_the_first() -> None:
    grid = build_grid("blocks", models=("zoo:vovnet_cifar", "resnet20", "vovnet_cifar"))
    assert [c.model for c in grid.cells] == ["vovnet_cifar", "resnet20"]
    assert [c.kind for c in grid.cells] == ["VoVNet", "basic residual"]
    assert grid.pairs == (("resnet20", "vovnet_cifar"),)
    with pytest.raises(ProbeError, match="--repeats 0"):
        grid.runs(0)
