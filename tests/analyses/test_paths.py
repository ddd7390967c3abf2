"""The unraveled view: path graph, exact counts by length, window, GraphML, report content."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections import Counter
from pathlib import Path

import networkx as nx
import pytest
import torch
from torch import nn

from resnet_probe.adapters import build_topology
from resnet_probe.analyses.base import RunContext
from resnet_probe.analyses.paths import (
    INPUT,
    OUTPUT,
    PathsAnalysis,
    PathsResult,
    count_paths,
    counts_by_node,
    length_moments,
    paths_result,
    shortest_window,
    unraveled_graph,
    write_graphml,
)
from resnet_probe.errors import OutputError, PlanError, ProbeError
from resnet_probe.executor import Executor
from resnet_probe.models.load import load_model
from resnet_probe.models.registry import get_entry, list_models
from resnet_probe.results import RunRecord
from resnet_probe.structure import Topology, Unit, identity, relu


def zoo_topology(name: str) -> Topology:
    """Topology of a freshly built zoo model (random weights; paths do not depend on them)."""
    return build_topology(get_entry(name).builder())


def toy_unit(index: int, kind: str) -> Unit:
    """A shape-keeping unit on 4 channels with the given shortcut kind ('none' = plain)."""
    conv = nn.Conv2d(4, 4, 3, padding=1)
    return Unit(
        index=index, name=f"u{index}", stage=1, in_channels=4, out_channels=4, stride=1,
        downsampling=False, shortcut_kind=kind, shortcut=None if kind == "none" else identity,
        residual=conv, post=relu, module=conv,
    )


def toy_topology(kinds: list[str], transitions: tuple[int, ...] = ()) -> Topology:
    """A chain of toy units with identity transitions before the given unit indices."""
    units = tuple(toy_unit(i, kind) for i, kind in enumerate(kinds))
    model = nn.ModuleList(u.module for u in units)
    return Topology("toy", identity, units, identity, model, transitions={i: identity for i in transitions})


def brute_force_counts(g: nx.MultiDiGraph) -> list[int]:
    """Enumerate every input->output edge path of the multigraph and bin it by residual edges."""
    lengths = Counter(
        sum(g.edges[e]["length"] for e in path)
        for path in nx.all_simple_edge_paths(g, INPUT, OUTPUT)
    )
    n = g.graph["n_units"]
    return [lengths.get(k, 0) for k in range(n + 1)]


# --- the graph ----------------------------------------------------------------------------


def test_resnet20_graph_layout() -> None:
    g = unraveled_graph(zoo_topology("resnet20"))
    assert g.number_of_nodes() == 10 and g.number_of_edges() == 18
    assert list(nx.topological_sort(g))[0] == INPUT and list(nx.topological_sort(g))[-1] == OUTPUT
    kinds = Counter(kind for *_, kind in g.edges(data="kind"))
    assert kinds == {"residual": 9, "identity": 7, "zero-pad": 2}
    # Option A zero-pads at the two downsampling units, layer2.0 and layer3.0.
    pads = sorted(d["index"] for *_, d in g.edges(data=True) if d["kind"] == "zero-pad")
    assert pads == [3, 6]
    assert g.edges["after:layer1.2", "after:layer2.0", "shortcut"]["kind"] == "zero-pad"
    assert g.edges["after:layer3.1", OUTPUT, "residual"]["unit"] == "layer3.2"
    assert all(d["deletable"] for *_, d in g.edges(data=True) if d["kind"] == "residual")


def test_projection_shortcuts_are_labelled() -> None:
    g_b = unraveled_graph(zoo_topology("resnet20_b"))
    assert Counter(k for *_, k in g_b.edges(data="kind"))["projection"] == 2
    g_c = unraveled_graph(zoo_topology("resnet20_c"))
    assert Counter(k for *_, k in g_c.edges(data="kind"))["projection"] == 9
    g_pre = unraveled_graph(zoo_topology("preact_resnet20"))
    assert Counter(k for *_, k in g_pre.edges(data="kind")) == {"residual": 9, "identity": 7, "projection": 2}


def test_plain_net_has_one_edge_per_unit_and_one_path() -> None:
    g = unraveled_graph(zoo_topology("plain20"))
    assert g.number_of_edges() == 9
    assert {k for *_, k in g.edges(keys=True)} == {"residual"}
    counts = count_paths(g)
    assert counts == [0] * 9 + [1]
    assert brute_force_counts(g) == counts
    result = paths_result(g)
    assert result.total_paths == 1 and result.mean_length == 9.0 and result.std_length == 0.0
    assert result.window_95 == (9, 9)


# --- exact counts -------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in list_models() if get_entry(n).family != "cifar-vovnet"])
def test_counts_are_exact_binomials_for_every_zoo_model(name: str) -> None:
    topology = zoo_topology(name)
    n = topology.n_units
    counts = count_paths(unraveled_graph(topology))
    assert len(counts) == n + 1
    if get_entry(name).family == "cifar-plain":
        assert counts == [0] * n + [1]
        return
    assert counts == [math.comb(n, k) for k in range(n + 1)]
    assert sum(counts) == 2**n
    assert all(type(c) is int for c in counts)


def test_resnet1202_counts_are_exact_past_float_precision() -> None:
    result = paths_result(unraveled_graph(zoo_topology("resnet1202")))
    assert result.n_units == 600
    assert result.total_paths == 2**600
    assert result.counts[300] == math.comb(600, 300)
    # 180 digits: a float count would have lost all but the first 16
    assert len(str(result.counts[300])) == 180
    assert int(float(result.counts[300])) != result.counts[300]
    assert result.mean_length == 300.0
    assert result.std_length == pytest.approx(math.sqrt(150), rel=1e-15)
    a, b = result.window_95
    assert sum(result.counts[a : b + 1]) * 20 >= 19 * 2**600
    assert sum(result.counts[a + 1 : b + 1]) * 20 < 19 * 2**600
    assert sum(result.counts[a:b]) * 20 < 19 * 2**600
    # JSON keeps every digit of the big ints
    back = PathsResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back == result


@pytest.mark.parametrize("name", ["resnet20", "preact_resnet20", "resnet20_b"])
def test_brute_force_enumeration_agrees_on_zoo_graphs(name: str) -> None:
    g = unraveled_graph(zoo_topology(name))
    counts = count_paths(g)
    assert brute_force_counts(g) == counts
    assert sum(counts) == 512


def test_itertools_enumeration_agrees_on_a_mixed_chain() -> None:
    kinds = ["identity", "none", "identity", "identity", "none", "identity"]
    g = unraveled_graph(toy_topology(kinds))
    # Each residual unit: branch (1) or shortcut (0); plain units always pass their branch.
    choices = [(0, 1) if kind != "none" else (1,) for kind in kinds]
    expected = Counter(sum(c) for c in itertools.product(*choices))
    counts = count_paths(g)
    assert counts == [expected.get(k, 0) for k in range(len(kinds) + 1)]
    assert counts == [0, 0, 1, 4, 6, 4, 1]
    assert brute_force_counts(g) == counts


def test_transition_is_one_non_deletable_edge() -> None:
    topology = toy_topology(["identity"] * 5, transitions=(0, 3))
    g = unraveled_graph(topology)
    transitions = [(u, v, d) for u, v, k, d in g.edges(keys=True, data=True) if k == "transition"]
    assert len(transitions) == 2
    assert all(d["kind"] == "transition" and d["length"] == 0 and not d["deletable"] for *_, d in transitions)
    assert ("after:u2", "before:u3") in [(u, v) for u, v, _ in transitions]
    assert ("input", "before:u0") in [(u, v) for u, v, _ in transitions]
    assert g.number_of_nodes() == 5 + 1 + 2 and g.number_of_edges() == 2 * 5 + 2
    counts = count_paths(g)
    assert counts == [1, 5, 10, 10, 5, 1]
    assert brute_force_counts(g) == counts


def test_moments_are_exact() -> None:
    assert length_moments([1, 2, 1]) == (1.0, math.sqrt(0.5))
    mean, std = length_moments([math.comb(54, k) for k in range(55)])
    assert mean == 27.0 and std == pytest.approx(math.sqrt(13.5), rel=1e-15)


# --- the window ---------------------------------------------------------------------------


def test_shortest_window_exact_share() -> None:
    # 19/20 exactly: 95 of 100 is enough, 94 is not.
    assert shortest_window([5, 90, 5], 0.95) == (0, 1)  # 95 in two cells; leftmost of the tie
    assert shortest_window([4, 90, 6], 0.95) == (1, 2)
    assert shortest_window([1, 0, 0, 98, 1], 0.95) == (3, 3)
    assert shortest_window([1, 1, 1, 1], 1.0) == (0, 3)
    assert shortest_window([0.1, 0.7, 0.2], 0.9) == (1, 2)
    # binomial n = 9: C(9,k) for k in 2..7 holds 492 of 512 (96.1 %); 3..7 holds only 456
    assert shortest_window([math.comb(9, k) for k in range(10)], 0.95) == (2, 7)


def test_shortest_window_matches_brute_force_on_binomials() -> None:
    for n in (5, 9, 27, 54):
        counts = [math.comb(n, k) for k in range(n + 1)]
        total = sum(counts)
        best = min(
            (b - a, -sum(counts[a : b + 1]), a, b)
            for a in range(n + 1)
            for b in range(a, n + 1)
            if 20 * sum(counts[a : b + 1]) >= 19 * total
        )
        assert shortest_window(counts, 0.95) == (best[2], best[3])


def test_shortest_window_rejects_bad_shares() -> None:
    with pytest.raises(PlanError, match="share 1.5"):
        shortest_window([1, 2], 1.5)
    with pytest.raises(PlanError, match="zero"):
        shortest_window([0, 0], 0.9)


# --- GraphML ------------------------------------------------------------------------------


def test_graphml_round_trip(tmp_path: Path) -> None:
    g = unraveled_graph(zoo_topology("resnet20"))
    path = tmp_path / "r20.graphml"
    write_graphml(g, path)
    back = nx.read_graphml(path)
    assert isinstance(back, nx.MultiDiGraph)
    assert set(back.nodes) == set(g.nodes)
    assert sorted(back.edges(keys=True)) == sorted(g.edges(keys=True))
    for u, v, k, d in g.edges(keys=True, data=True):
        assert back.edges[u, v, k] == d
    assert back.graph["total_paths"] == "512" and back.graph["n_units"] == 9
    assert back.nodes[OUTPUT]["paths"] == "512" and back.nodes["after:layer1.1"]["paths"] == "4"
    # the graph read back counts the same paths
    assert count_paths(back) == count_paths(g)
    assert not list(tmp_path.glob(".*.tmp"))


def test_graphml_keeps_big_counts_as_strings(tmp_path: Path) -> None:
    g = unraveled_graph(toy_topology(["identity"] * 80))
    write_graphml(g, tmp_path / "big.graphml")
    back = nx.read_graphml(tmp_path / "big.graphml")
    assert int(back.graph["total_paths"]) == 2**80
    assert int(back.nodes[OUTPUT]["paths"]) == 2**80
    assert count_paths(back)[40] == math.comb(80, 40)


def test_graphml_into_a_directory_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"):
        write_graphml(unraveled_graph(toy_topology(["identity"])), tmp_path)


# --- the analysis and its report ----------------------------------------------------------


def test_analysis_runs_without_data_or_weights(tmp_path: Path) -> None:
    assert PathsAnalysis.needs_data is False and PathsAnalysis.needs_weights is False
    loaded = load_model("zoo:resnet20", weights="random")
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    ctx = RunContext(loaded=loaded, executor=Executor(loaded.topology, "cpu"))
    result = PathsAnalysis().run(ctx, graphml=tmp_path / "g.graphml")
    assert result.counts == tuple(math.comb(9, k) for k in range(10))
    assert result.total_paths == 512 and result.mean_length == 4.5 and result.std_length == 1.5
    assert result.window_95 == (2, 7)
    assert (tmp_path / "g.graphml").is_file()
    assert all(torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())
    with pytest.raises(ProbeError, match="graphml"):
        PathsAnalysis().run(ctx, samples=3)


def _record(result: PathsResult, spec: str) -> RunRecord:
    return RunRecord("paths", {"spec": spec, "units": result.n_units}, None, 0, "cpu", result.to_dict())


def test_report_content_for_resnet110() -> None:
    from resnet_probe.reports import content, render
    from resnet_probe.reports.analyses.paths import big_int
    from resnet_probe.reports.svg import figure_svg

    result = paths_result(unraveled_graph(zoo_topology("resnet110")))
    record = _record(result, "zoo:resnet110")
    render._load_content_modules()
    reading = content.reading(result, record)
    assert "2^54 = 18,014,398,509,481,984 paths through 54 units" in reading[0]
    assert "exactly the binomial" in reading[0]
    a, b = result.window_95
    assert f"{a}–{b} residual branches" in reading[1] and "mean 27.00" in reading[1]
    tables = content.tables(result, record)
    assert ["total paths", big_int(2**54)] in tables[0].rows
    assert tables[1].rows[27][1] == f"{math.comb(54, 27):,}"
    (fig,) = content.figures(result, record)
    assert fig.panels == 2
    svg = figure_svg(fig)
    assert svg.startswith("<svg") and "binomial" in svg


def test_report_for_a_plain_net_and_a_huge_net() -> None:
    from resnet_probe.reports import content, render
    from resnet_probe.reports.svg import figure_svg

    render._load_content_modules()
    plain = paths_result(unraveled_graph(zoo_topology("plain20")))
    assert content.reading(plain, _record(plain, "zoo:plain20")) == [
        "zoo:plain20 has no shortcuts: its only path runs through all 9 units."
    ]
    # 1100 units: counts pass float range, the figure falls back to log10 counts
    huge = paths_result(unraveled_graph(toy_topology(["identity"] * 1100)))
    record = _record(huge, "toy")
    svg = figure_svg(content.figures(huge, record)[0])
    assert "log10 number of paths" in svg
    rows = content.tables(huge, record)[1].rows
    a, b = huge.window_95
    assert [r[0] for r in rows] == list(range(a, b + 1))
    assert "digits" in rows[0][1]


# --- beyond the sum: dense layers and OSA modules ----------------------------------------


def test_densenet_bc100_has_48_units_and_binomial_counts() -> None:
    topology = zoo_topology("densenet_bc100_k12")
    g = unraveled_graph(topology)
    assert topology.n_units == 48
    counts = count_paths(g)
    assert counts == [math.comb(48, k) for k in range(49)]
    # the two transitions are single non-deletable edges before layers 16 and 32
    transitions = sorted(d["index"] for *_, k, d in g.edges(keys=True, data=True) if k == "transition")
    assert transitions == [16, 32]
    assert Counter(kind for *_, kind in g.edges(data="kind")) == {"identity": 48, "residual": 48, "transition": 2}


def dense_block_graph(layers: int) -> nx.MultiDiGraph:
    """A dense block drawn as Huang et al. draw it: every layer fed by the input and every earlier layer."""
    g = nx.MultiDiGraph()
    for i in range(1, layers + 1):
        for j in range(i):
            g.add_edge(INPUT if j == 0 else f"h{j}", f"h{i}", length=1)
    for j in range(layers + 1):
        g.add_edge(INPUT if j == 0 else f"h{j}", OUTPUT, length=0)
    return g


@pytest.mark.parametrize("layers", [1, 4, 12])
def test_dense_layer_chain_counts_equal_the_all_to_all_dense_graph(layers: int) -> None:
    from resnet_probe.models.zoo.densenet import CifarDenseNet

    # One block only: a 3-block DenseNet-BC of depth 6L+4, its first block alone.
    topology = build_topology(CifarDenseNet(6 * layers + 4, 4, bottleneck=True, compression=0.5))
    first = dataclasses.replace(topology, units=topology.units[:layers], transitions={})
    ours = count_paths(unraveled_graph(first))
    dense = counts_by_node(dense_block_graph(layers))[OUTPUT]
    assert ours == dense == [math.comb(layers, k) for k in range(layers + 1)]


def uniform_product(modules: list[int], identity: list[bool]) -> list[int]:
    """Paths by length of a chain of OSA modules, by enumerating one path choice per module."""
    choices = [[0, *range(0, L + 1)] if idt else list(range(L + 1)) for L, idt in zip(modules, identity, strict=True)]
    lengths = Counter(sum(c) for c in itertools.product(*choices))
    return [lengths.get(k, 0) for k in range(sum(modules) + 1)]


def test_vovnet_counts_are_a_product_of_uniform_distributions() -> None:
    g = unraveled_graph(zoo_topology("vovnet_cifar"))
    counts = count_paths(g)
    assert counts == uniform_product([4] * 6, [False] * 6)
    assert sum(counts) == 5**6 and len(counts) == 25
    assert counts[:4] == [1, 6, 21, 56] and counts[12] == 1751
    assert counts != [math.comb(24, k) for k in range(25)]
    assert length_moments(counts) == (12.0, pytest.approx(math.sqrt(12), rel=1e-15))
    # the chain is real graph structure: 4 chain edges per module, each of length 1
    kinds = Counter(kind for *_, kind in g.edges(data="kind"))
    assert kinds == {"chain": 24, "concat": 24, "identity": 6, "aggregation": 6, "transition": 2}


def test_vovnet_graphml_round_trip(tmp_path: Path) -> None:
    g = unraveled_graph(zoo_topology("vovnet_ese_cifar"))
    write_graphml(g, tmp_path / "vov.graphml")
    back = nx.read_graphml(tmp_path / "vov.graphml")
    assert count_paths(back) == count_paths(g) and back.graph["total_paths"] == str(5**3 * 6**3)
    assert back.nodes["inside:stages.0.0:layer2"]["paths"] == "1"  # one path reaches the chain's 2nd output
    chain = [d for u, v, d in back.edges(data=True) if d["kind"] == "chain"]
    assert len(chain) == 24 and all(d["deletable"] and d["length"] == 1 for d in chain)


def test_vovnet_v2_identity_adds_a_second_length_zero_path() -> None:
    g = unraveled_graph(zoo_topology("vovnet_ese_cifar"))
    identity = [False, True] * 3  # the second module of each stage has in == out channels
    assert count_paths(g) == uniform_product([4] * 6, identity)
    assert sum(count_paths(g)) == 5**3 * 6**3


def test_small_vovnet_brute_force() -> None:
    from resnet_probe.models.zoo.vovnet import CifarVoVNet

    topology = build_topology(CifarVoVNet((4, 6), (8, 12), layers_per_module=3, modules_per_stage=2, stem_channels=6,
                                          identity=True))
    g = unraveled_graph(topology)
    n = 3 * topology.n_units
    lengths = Counter(sum(g.edges[e]["length"] for e in path) for path in nx.all_simple_edge_paths(g, INPUT, OUTPUT))
    brute = [lengths.get(k, 0) for k in range(n + 1)]
    assert count_paths(g) == brute == uniform_product([3] * 4, [False, True, False, True])


def test_vovnet_report_compares_with_a_resnet() -> None:
    from resnet_probe.reports import content, render
    from resnet_probe.reports.svg import figure_svg

    render._load_content_modules()
    result = paths_result(unraveled_graph(zoo_topology("vovnet_cifar")))
    record = _record(result, "zoo:vovnet_cifar")
    reading = content.reading(result, record)
    assert "15,625 paths through 6 units" in reading[0] and "differ from the binomial" in reading[0]
    assert "A ResNet of 24 units" in reading[2] and "2^24 = 16,777,216" in reading[2]
    assert "std 2.45" in reading[2] and "spread wider (std 3.46)" in reading[2]
    summary, per_length = content.tables(result, record)
    assert ["ResNet of 24 units: mean / std of length", "12.0000 / 2.4495"] in summary.rows
    assert per_length.columns[3] == "ResNet of 24 units: share"
    # length 12: 1751 / 15625 = 11.21 % against C(24, 12) / 2^24 = 16.12 %
    assert per_length.rows[12][:5] == [12, "1,751", "11.21 %", "16.12 %", "-4.91 pp"]
    svg = figure_svg(content.figures(result, record)[0])
    assert "share of paths" in svg and "ResNet of 24 units" in svg
