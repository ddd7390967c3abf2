"""The unraveled view (Veit et al. 2016): the path graph of a topology and its paths by length.

Every unit contributes its own internal connectivity (``Unit.edges``): a residual unit
``y = post(shortcut(x) + residual(x))`` is two parallel edges between the node before it and
the node after it, so a chain of n such units holds 2^n paths, C(n, k) of which pass through
exactly k residual branches. A DenseNet layer is that same pair (its shortcut passes on every
earlier feature map, its branch adds the new ones), so a dense block of L layers holds every
chain of layers, 2^L paths. An OSA module is its chain of L convs, each output and the module
input aggregated once: L+1 paths of lengths 0..L. The counts come from a dynamic program
over the graph, exactly, with Python ints (2^54 is past float precision); the binomial is
what the tests check them against, never an assumption.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

if TYPE_CHECKING:
    import networkx as nx
    import pandas as pd

from resnet_probe.analyses.base import Analysis, Option, RunContext
from resnet_probe.errors import OutputError, PlanError
from resnet_probe.files import atomic_write_text
from resnet_probe.results import Result
from resnet_probe.structure import IN, OUT, Topology, Unit

INPUT = "input"
OUTPUT = "output"
PATH_SHARE = 0.95


def _after(name: str) -> str:
    return f"after:{name}"


def _before(name: str) -> str:
    return f"before:{name}"


def _inside(name: str, node: str) -> str:
    return f"inside:{name}:{node}"


def unraveled_graph(topology: Topology) -> nx.MultiDiGraph:
    """The path graph: one node per unit boundary, and each unit's own edges between them.

    Nodes are ``input``, ``after:<unit>`` ... ``output`` (the boundary after the last unit),
    ``before:<unit>`` where a transition runs before a unit, and ``inside:<unit>:<node>`` for
    the nodes inside a unit with its own wiring (an OSA module's chain). A standard unit's edge
    keys are ``shortcut`` and ``residual``, a transition's ``transition``; every edge carries
    ``kind`` (identity, zero-pad, projection, scaled, gated, dropout, residual, transition, or
    a wiring's own: chain, concat, aggregation), ``unit``, ``index``, ``length`` (1 for an edge
    through a residual layer, else 0) and ``deletable``. A plain unit has only its residual
    edge.

    Example:
        >>> g = unraveled_graph(load_model("zoo:resnet20", weights="random").topology)
        >>> g.number_of_edges()
        18
    """
    import networkx as nx  # here, not at the top: runs that never build a graph skip its import
    n = topology.n_units
    g = nx.MultiDiGraph(n_units=n, family=topology.family)
    g.add_node(INPUT, label="input (after the stem)", position=0)
    prev = INPUT
    for unit in topology.units:
        i = unit.index
        if i in topology.transitions:
            node = _before(unit.name)
            g.add_node(node, label=f"after the transition before {unit.name}", position=i)
            g.add_edge(prev, node, key="transition", kind="transition", unit=f"transition {i}",
                       index=i, length=0, deletable=False)
            prev = node
        node = OUTPUT if i == n - 1 else _after(unit.name)
        label = "output (before the head)" if i == n - 1 else f"after {unit.name}"
        g.add_node(node, label=label, position=i + 1)
        _add_unit(g, unit, prev, node)
        prev = node
    if n == 0:
        g.add_node(OUTPUT, label="output (before the head)", position=0)
        g.add_edge(INPUT, OUTPUT, key="identity", kind="identity", unit="", index=-1, length=0,
                   deletable=False)
    return g


def _add_unit(g: nx.MultiDiGraph, unit: Unit, before: str, after: str) -> None:
    """The unit's edges between ``before`` and ``after``; deleting it removes those that pass a layer."""

    def node(local: str) -> str:
        if local == IN:
            return before
        if local == OUT:
            return after
        name = _inside(unit.name, local)
        if name not in g:
            g.add_node(name, label=f"{local} inside {unit.name}", position=unit.index)
        return name

    for e in unit.edges:
        g.add_edge(node(e.source), node(e.target), key=e.key, kind=e.kind, unit=unit.name, index=unit.index,
                   length=e.length, deletable=unit.deletable and e.length > 0)


def counts_by_node(g: nx.MultiDiGraph, source: str = INPUT) -> dict[str, list[int]]:
    """For each node, the number of paths from ``source`` to it by residual branches passed.

    One pass in topological order: a node's count polynomial is the sum of its predecessors'
    polynomials, shifted by each edge's ``length``. Exact ints, no path is enumerated.
    """
    import networkx as nx
    if not nx.is_directed_acyclic_graph(g):
        raise PlanError("the path graph has a cycle; an unraveled view needs a DAG")
    polys: dict[str, list[int]] = {}
    for v in nx.topological_sort(g):
        if v == source:
            polys[v] = [1]
            continue
        acc: list[int] = []
        for u, _, length in g.in_edges(v, data="length"):
            p = polys.get(u)
            if not p:
                continue
            need = len(p) + length
            if len(acc) < need:
                acc.extend([0] * (need - len(acc)))
            for j, c in enumerate(p):
                acc[j + length] += c
        polys[v] = acc
    return polys


def count_paths(g: nx.MultiDiGraph, source: str = INPUT, target: str = OUTPUT) -> list[int]:
    """``[c_0, ..., c_m]``: paths from ``source`` to ``target`` through exactly k residual edges.

    ``m`` is the longest path's length: the unit count for a chain of residual units, more where
    a unit holds a chain of its own (an OSA module).
    """
    n = int(g.graph.get("n_units", sum(1 for *_, d in g.edges(data="length") if d)))
    counts = counts_by_node(g, source).get(target, [])
    return list(counts) + [0] * (n + 1 - len(counts))


def shortest_window(values: Sequence[int | float], share: float) -> tuple[int, int]:
    """The shortest index range ``[a, b]`` whose values hold at least ``share`` of the sum.

    Ints are compared exactly (``share`` is read from its decimal text, so 0.95 is 19/20);
    among equally short windows the one holding more wins, then the leftmost.
    """
    if not 0 < share <= 1:
        raise PlanError(f"share {share}: must lie in (0, 1]")
    frac = Fraction(str(share))
    num, den = frac.numerator, frac.denominator
    total = sum(values)
    if total <= 0:
        raise PlanError("no mass to find a window in: every value is zero")
    best: tuple[int, int] | None = None
    best_mass: int | float = 0
    mass: int | float = 0
    a = 0
    # Values are non-negative, so the shortest window ending at b starts at the largest a
    # that still holds the share: a two-pointer sweep.
    for b, v in enumerate(values):
        mass += v
        while a < b and (mass - values[a]) * den >= num * total:
            mass -= values[a]
            a += 1
        if mass * den >= num * total:
            better = best is None or b - a < best[1] - best[0] or (
                b - a == best[1] - best[0] and mass > best_mass
            )
            if better:
                best, best_mass = (a, b), mass
    assert best is not None
    return best


def length_moments(counts: Sequence[int]) -> tuple[float, float]:
    """Mean and standard deviation of the path length, computed exactly then rounded once."""
    total = sum(counts)
    s1 = sum(k * c for k, c in enumerate(counts))
    s2 = sum(k * k * c for k, c in enumerate(counts))
    mean = Fraction(s1, total)
    var = Fraction(s2, total) - mean * mean
    return float(mean), math.sqrt(float(var))


@dataclass(frozen=True)
class PathsResult(Result):
    """Paths of the unraveled view by length: exact counts, mean, std and the 95 % window."""

    analysis: ClassVar[str] = "paths"
    n_units: int
    total_paths: int
    counts: tuple[int, ...]
    mean_length: float
    std_length: float
    window_95: tuple[int, int]

    def to_frame(self) -> pd.DataFrame:
        """One row per path length: how many paths pass through exactly k residual branches (exact ints)."""
        import pandas as pd

        total = self.total_paths
        return pd.DataFrame(
            [{"length": k, "paths": c, "share": c / total if total else 0.0} for k, c in enumerate(self.counts)]
        )


def paths_result(g: nx.MultiDiGraph) -> PathsResult:
    """Count the paths of a path graph and summarise their lengths."""
    counts = count_paths(g)
    mean, std = length_moments(counts)
    return PathsResult(
        n_units=int(g.graph["n_units"]),
        total_paths=sum(counts),
        counts=tuple(counts),
        mean_length=mean,
        std_length=std,
        window_95=shortest_window(counts, PATH_SHARE),
    )


def write_graphml(g: nx.MultiDiGraph, path: str | Path) -> None:
    """Write the path graph as GraphML, atomically; path counts go in as decimal strings.

    GraphML's ``long`` is 64 bits, so each node's ``paths`` (paths from the input to it) and
    the graph's ``total_paths`` are strings; ``networkx.read_graphml`` reads the file back.
    """
    import networkx as nx
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"--graphml {path}: is a directory; give a file name such as paths.graphml")
    out = g.copy()
    for node, poly in counts_by_node(g).items():
        out.nodes[node]["paths"] = str(sum(poly))
    out.graph["total_paths"] = str(sum(count_paths(g)))
    atomic_write_text(path, "\n".join(nx.generate_graphml(out)) + "\n")


class PathsAnalysis(Analysis):
    """The unraveled view: how many paths of each length the residual network holds."""

    name = "paths"
    description = "unraveled view: paths by number of residual branches (Veit et al. Fig. 6a)"
    result_type = PathsResult
    options = (Option("graphml", str, None, "also write the path graph as GraphML to this file"),)
    needs_data = False
    needs_weights = False

    def run(self, ctx: RunContext, graphml: str | Path | None = None, **options: Any) -> PathsResult:
        """Build the path graph, count its paths; ``graphml`` also writes the graph to a file."""
        if options:
            raise PlanError(f"paths takes no option {sorted(options)[0]!r}; valid: graphml")
        g = unraveled_graph(ctx.loaded.topology)
        result = paths_result(g)
        if graphml is not None:
            write_graphml(g, graphml)
        return result
