"""Read the residual units out of a traced graph: cuts, units, transitions, stem and head.

The graph is read in its own (topological) order after dead code (shape asserts) is dropped.
Values that depend on the input are *flow*; among them, *shape values* depend only on the
shapes of tensors (``B, H, W, C = x.shape``, ``x.new_zeros(...)``, sizes computed from those).
A *cut* is a tensor after which no other tensor is still needed and every shape value still
needed reads a tensor of the cut's own shape (the input of a residual addition, the addition,
a norm or activation of either): the graph between two cuts is then a function of one tensor,
its shape values recomputed from that tensor. A unit is a stretch between two cuts that ends in
``a + b`` of two tensors computed from its input, followed only by activations (the unit's
``post``) and layout operations (reshape, permute, ...: they commute with the addition, value
for value, so they go into both branches). Any other stretch is a transition, or the stem
before the first unit, or the head after the last. Every part is a
:class:`torch.fx.GraphModule` cut out of the graph that calls the model's own submodules and
parameters: the model is shared, never copied or changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from torch import fx, nn

from resnet_probe.adapters import graph_ops as ops
from resnet_probe.adapters.sizes import Observing, SizeTable
from resnet_probe.adapters.tracing import refuse
from resnet_probe.structure import Fn, identity


@dataclass(frozen=True)
class Found:
    """One residual unit as found in the graph."""

    name: str
    shortcut_kind: str
    shortcut: Fn
    residual: Fn
    post: Fn
    module: nn.Module
    in_channels: int
    out_channels: int
    stride: int
    transition: Fn | None  # what runs between the previous unit (or the stem) and this one
    layout: bool = False  # reshapes / permutes after the addition were moved into both branches


@dataclass(frozen=True)
class Discovered:
    """Stem, units (each with the transition before it) and head of a traced model."""

    stem: Fn
    units: tuple[Found, ...]
    head: Fn
    # Residual additions that close no unit: (where, the unit whose branch holds it or None, why not a unit).
    nested: tuple[tuple[str, str | None, str], ...] = ()


class _SameShape:
    """Union-find over tensors known to have one shape."""

    def __init__(self) -> None:
        self.parent: dict[fx.Node, fx.Node] = {}

    def find(self, n: fx.Node) -> fx.Node:
        while n in self.parent:
            n = self.parent[n]
        return n

    def union(self, a: fx.Node, b: fx.Node) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra is not rb:
            self.parent[rb] = ra


def discover(model: nn.Module, gm: fx.GraphModule) -> Discovered:
    """The units of a traced model, with stem, transitions and head.

    Example:
        >>> found = discover(model, trace(model).graph_module)
        >>> [u.name for u in found.units][:2]
        ['blocks.0.attn', 'blocks.0.mlp']
    """
    reader = GraphReader(model, gm)
    return reader.read()


class GraphReader:
    """One pass over a traced graph: flow, shape values, liveness, cuts, then the parts."""

    def __init__(self, model: nn.Module, gm: fx.GraphModule) -> None:
        self.model, self.gm = model, gm
        written = ops.thread_in_place_writes(gm)
        if written is not None:
            raise refuse(model, f"it writes into a tensor by indexing ({written.name} {ops.where(written)})")
        every = list(gm.graph.nodes)
        output = next(n for n in every if n.op == "output")
        needed = {output}
        for n in reversed(every):
            if n in needed:
                needed.update(n.all_input_nodes)
        self.nodes = [n for n in every if n in needed or n.op == "placeholder"]
        self.sizes = SizeTable(gm, set(self.nodes))
        self.pos = {n: i for i, n in enumerate(self.nodes)}
        self.users = {n: [u for u in n.users if u in needed] for n in self.nodes}
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        required = [n for n in placeholders[1:] if not n.args]
        if not placeholders or required:
            raise refuse(model, f"forward takes {1 + len(required)} tensor inputs, not one")
        self.input, self.output = placeholders[0], output
        result = output.args[0]
        if not isinstance(result, fx.Node):
            raise refuse(model, f"forward returns a {type(result).__name__}, not one tensor")
        self.result = result
        self._classify()
        if result not in self.tensors:
            raise refuse(model, "its output does not depend on its input")

    def _classify(self) -> None:
        """Flow, shape values (with the tensors whose shapes they read), ancestors, equal shapes."""
        self.flow: set[fx.Node] = {self.input}
        self.shapes: dict[fx.Node, frozenset[fx.Node]] = {}  # shape value -> the tensors whose shapes it reads
        self.leaves: dict[fx.Node, frozenset[fx.Node]] = {}  # shape value -> the shape reads it is made of
        for n in self.nodes:
            inputs = [a for a in n.all_input_nodes if a in self.flow]
            if n.op in ("placeholder", "output") or not inputs:
                continue
            self.flow.add(n)
            first = n.args[0] if n.args else None
            others = [a for a in inputs if a is not first]
            if ops.is_shape_read(n, self.gm) and first in self.flow and all(a in self.shapes for a in others):
                assert isinstance(first, fx.Node)
                self.shapes[n] = self.shapes.get(first, frozenset({first})).union(*(self.shapes[a] for a in others))
                self.leaves[n] = frozenset({n}).union(*(self.leaves[a] for a in inputs if a in self.leaves))
            elif all(a in self.shapes for a in inputs):
                self.shapes[n] = frozenset().union(*(self.shapes[a] for a in inputs))
                self.leaves[n] = frozenset().union(*(self.leaves[a] for a in inputs))
        self.tensors = self.flow - set(self.shapes)
        self.same = _SameShape()
        for n in self.nodes:
            ins = self.tensor_inputs(n)
            if self.is_residual_add(n):
                for a in ins:
                    self.same.union(n, a)
            elif len(ins) == 1 and ops.is_shape_preserving(n, self.gm, self.tensors):
                self.same.union(n, ins[0])
        self.anc: dict[fx.Node, int] = {}
        for n in self.nodes:
            if n in self.flow:
                bits = 0
                for a in n.all_input_nodes:
                    if a in self.flow:
                        bits |= self.anc[a] | (1 << self.pos[a])
                self.anc[n] = bits
        self.last = {n: max((self.pos[u] for u in self.users[n]), default=self.pos[n]) for n in self.flow}
        self.value_last = {
            n: max((self.pos[u] for u in self.users[n] if not ops.is_shape_read(u, self.gm)), default=self.pos[n])
            for n in self.tensors
        }

    def tensor_inputs(self, node: fx.Node) -> list[fx.Node]:
        """The tensors among a node's inputs that depend on the model input."""
        return [a for a in node.all_input_nodes if a in self.tensors]

    def is_residual_add(self, node: fx.Node) -> bool:
        """An addition of two tensors that both depend on the input."""
        return node in self.tensors and ops.is_add(node) and all(
            isinstance(a, fx.Node) and a in self.tensors for a in node.args
        )

    def is_skip(self, node: fx.Node) -> bool:
        """A residual addition one of whose operands feeds the other: ``x + f(x)``."""
        if not self.is_residual_add(node):
            return False
        p, q = node.args
        assert isinstance(p, fx.Node) and isinstance(q, fx.Node)
        return bool(self.anc[q] >> self.pos[p] & 1 or self.anc[p] >> self.pos[q] & 1)

    def ancestry(self, v: fx.Node, among: list[fx.Node]) -> list[fx.Node]:
        """The nodes of ``among`` that ``v`` is computed from, ``v`` included."""
        bits = self.anc[v] | 1 << self.pos[v]
        return [n for n in among if bits >> self.pos[n] & 1]

    # -- cuts ----------------------------------------------------------------------------------

    def _fits(self, m: fx.Node, cut: fx.Node, p: int, measured: bool = True) -> bool:
        """Whether live value ``m`` is still available after ``cut`` without being passed on.

        It is when every shape read it is made of reads a tensor of the cut's shape (it is then
        read from the cut), a dtype or device, or, if ``measured``, sizes only (measured per resolution).
        """
        if m in self.tensors:
            if self.value_last[m] > p:
                return False
            leaves: Iterable[fx.Node] = [u for u in self.users[m] if self.pos[u] > p]
        else:
            leaves = self.leaves[m]
        return all(self._readable(leaf, cut, measured) for leaf in leaves)

    def _readable(self, read: fx.Node, cut: fx.Node, measured: bool) -> bool:
        t = read.args[0]
        if not isinstance(t, fx.Node) or t in self.shapes or self.same.find(t) is self.same.find(cut):
            return True
        return (measured and ops.is_size_read(read)) or ops.is_placement_read(read)

    def live_after(self, p: int) -> list[fx.Node]:
        """Flow values made at or before position ``p`` and still needed after it, in graph order."""
        return [n for n in self.nodes[: p + 1] if n in self.flow and self.last[n] > p]

    def cuts(self) -> list[fx.Node]:
        """Cuts that read sizes from their own tensor, and inside stretches that would hold several
        residual additions, the cuts that need sizes measured per resolution (a patch grid's H, W)."""
        strict = self._cuts(measured=False)
        measured = self._cuts(measured=True)
        out = []
        for c0, c1 in zip(strict, strict[1:], strict=False):
            out.append(c0)
            _, a = self.tail(c0, c1)
            p0, p1 = self.pos[c0], self.pos[c1]
            if any(self.is_skip(n) and n is not a for n in self.nodes[p0 + 1 : p1 + 1]):
                out += [c for c in measured if p0 < self.pos[c] < p1]
        return out + strict[-1:]

    def _cuts(self, measured: bool) -> list[fx.Node]:
        """Tensors after which only they, and values that fit them (see :meth:`_fits`), are needed."""
        ending: dict[int, list[fx.Node]] = {}
        for n in self.flow:
            ending.setdefault(self.last[n], []).append(n)
        live: set[fx.Node] = set()
        out = []
        for p, n in enumerate(self.nodes):
            if n in self.flow and self.last[n] > p:
                live.add(n)
            live.difference_update(ending.get(p, ()))
            if n in self.tensors and (n in live or n is self.result):
                if all(m is n or self._fits(m, n, p, measured) for m in live):
                    out.append(n)
        return out

    def blocker(self, node: fx.Node) -> str:
        """What keeps a residual addition from closing a unit: the first value still needed after it."""
        p = self.pos[node]
        for m in self.live_after(p):
            if m is not node and not self._fits(m, node, p):
                if m in self.shapes or (m in self.tensors and self.value_last[m] <= p):
                    root = min(self.shapes.get(m, frozenset({m})), key=self.pos.__getitem__)
                    return f"a size of {ops.describe(root, self.gm)} is still read after it"
                return f"{ops.describe(m, self.gm)} is still used after it"
        return "no cut follows it"

    # -- reading the chain ---------------------------------------------------------------------

    def tail(self, x: fx.Node, y: fx.Node) -> tuple[list[fx.Node], fx.Node]:
        """The run of one-input activations and layout ops that ends at ``y``, and the node before it."""
        chain: list[fx.Node] = []
        n = y
        while n is not x and (ops.is_layout(n, self.gm) or ops.is_elementwise(n, self.gm)):
            ins = self.tensor_inputs(n)
            if len(ins) != 1 or any(u is not n and not ops.is_shape_read(u, self.gm) for u in self.users[ins[0]]):
                break
            chain.insert(0, n)
            n = ins[0]
        return chain, n

    def read(self) -> Discovered:
        """Stem, units (with their transitions) and head."""
        cuts = self.cuts()
        spans: list[tuple[fx.Node, fx.Node, list[fx.Node], fx.Node]] = []  # input, addition, tail, output
        for x, y in zip(cuts, cuts[1:], strict=False):
            tail, a = self.tail(x, y)
            if a is not x and self.is_residual_add(a) and self.split(x, a) is not None:
                spans.append((x, a, tail, y))
            elif spans and spans[-1][3] is x and a is x and all(ops.is_elementwise(t, self.gm) for t in tail):
                x0, a0, tail0, _ = spans[-1]
                spans[-1] = (x0, a0, tail0 + tail, y)  # more activations after the addition: more post
        closing = {a for _, a, _, _ in spans}
        if not any(self.is_residual_add(n) for n in self.nodes):
            raise refuse(self.model, "no addition of two computed values (x + f(x)) in the traced graph")
        inner = [n for n in self.nodes if self.is_skip(n) and n not in closing]
        if not spans:
            why = f": {inner[0].name} {ops.where(inner[0])} is one, but {self.blocker(inner[0])}" if inner else ""
            raise refuse(self.model, f"no addition closes a unit{why}")
        found: list[Found] = []
        prev = self.input
        for x, a, tail, end in spans:
            transition = None if prev is self.input or x is prev else self.extract(prev, self.between(prev, x), x)
            found.append(self.unit(x, a, tail, transition))
            prev = end
        first = spans[0][0]
        stem = self.extract(self.input, self.between(self.input, first), first)
        head = self.extract(prev, self.between(prev, self.result), self.result)
        if self.sizes.watched:
            stem = Observing(stem, self.sizes)
        units = _named(found, [self._children(u) for u in found])
        nested = []
        for n in inner:  # a residual inside a part: part of it (a residual inside a branch, a CSP stage, ...)
            held = next((u.name for u, (x, a, _, _) in zip(units, spans, strict=True)
                         if self.pos[x] < self.pos[n] < self.pos[a]), None)
            nested.append((ops.where(n), held, self.blocker(n)))
        return Discovered(stem, tuple(units), head, tuple(nested))

    def between(self, a: fx.Node, b: fx.Node) -> list[fx.Node]:
        """Flow nodes after ``a`` up to and including ``b``, in graph order."""
        return [n for n in self.nodes[self.pos[a] + 1 : self.pos[b] + 1] if n in self.flow]

    def split(self, x: fx.Node, add: fx.Node) -> tuple[fx.Node, fx.Node] | None:
        """Shortcut and residual operand of a unit's addition: the input itself, else the one of fewer ops.

        ``None`` where both take as many operations: two parallel branches (``a(x) + b(x)``, two heads
        averaged), not a residual unit.
        """
        p, q = add.args
        assert isinstance(p, fx.Node) and isinstance(q, fx.Node)
        if q is x:
            p, q = q, p
        if p is x:
            return p, q
        body = self.between(x, add)[:-1]
        sp, sq = len(self.ancestry(p, body)), len(self.ancestry(q, body))
        if sp == sq:
            return None
        return (p, q) if sp < sq else (q, p)

    def unit(self, x: fx.Node, add: fx.Node, tail: list[fx.Node], transition: Fn | None) -> Found:
        """One unit from its input, its addition and the activations / layout ops after it."""
        body = self.between(x, add)[:-1]
        split = self.split(x, add)
        assert split is not None
        s, r = split
        s_nodes = [] if s is x else self.ancestry(s, body)
        r_nodes = self.ancestry(r, body)
        kind = "identity" if s is x else self.shortcut_kind(s_nodes)
        shortcut = self.extract(x, s_nodes, s, tail)
        residual = self.extract(x, r_nodes, r, tail)
        post = self.extract(add, [], add, tail, keep=lambda t: ops.is_elementwise(t, self.gm))
        in_ch, out_ch = self._channels(r_nodes, s_nodes, kind)
        stride = 1
        for n in r_nodes:
            stride *= ops.layer_stride(n, self.gm)
        layout = any(ops.is_layout(t, self.gm) for t in tail)
        stack = list((add.meta.get("nn_module_stack") or {}).values())
        name = str(stack[-1][0]) if stack and stack[-1][0] else self._path_of(r_nodes)  # the block that adds
        return Found(
            name, kind, shortcut, residual, post, self.model, in_ch, out_ch, stride, transition,
            layout,
        )

    def shortcut_kind(self, nodes: list[fx.Node]) -> str:
        """``identity`` (layout only), ``scaled`` (times a constant or parameter), ``zero-pad`` (option A:
        slicing and zero padding, no parameters) or ``projection``."""
        moving = [n for n in nodes if not ops.is_layout(n, self.gm) and n not in self.shapes]
        if all(ops.passes_through(n, self.gm) for n in moving):
            return "identity"
        if all(ops.passes_through(n, self.gm) or ops.is_scaling(n, self.tensors) for n in moving):
            return "scaled"
        if any(ops.is_zero_pad(n) for n in moving) and all(
            ops.passes_through(n, self.gm) or ops.is_subsample(n) or ops.is_zero_pad(n) for n in moving
        ):
            return "zero-pad"
        return "projection"

    def extract(
        self,
        inp: fx.Node,
        nodes: list[fx.Node],
        out: fx.Node,
        tail: list[fx.Node] | None = None,
        keep: Callable[[fx.Node], bool] | None = None,
    ) -> Fn:
        """``nodes``, then the ``keep`` ops of ``tail``, as a GraphModule of ``inp``; identity when empty.

        Tail ops not kept pass their input through (layout ops go into both branches of a unit,
        activations into its post). Shape values made before ``inp`` are recomputed from it.
        """
        tail = tail or []
        keep = keep or (lambda t: ops.is_layout(t, self.gm))
        if out is inp and not any(keep(t) for t in tail):
            return identity
        graph = fx.Graph()
        x = graph.placeholder("x")
        env: dict[fx.Node, fx.Node] = {inp: x}
        start = self.pos[inp]

        def arg(n: fx.Node) -> fx.Node:
            if n not in env:
                t = n.args[0] if n in self.leaves else None
                if isinstance(t, fx.Node) and t in self.tensors and t not in env and not self._same(t, inp):
                    if ops.is_size_read(n):  # a size of a tensor this part never sees: measured per resolution
                        key, at = self.sizes.watch(n), self.sizes.watch(inp)
                        env[n] = graph.call_module("sizes", (key, at, x))
                    elif ops.is_placement_read(n):  # every activation has the same dtype and device
                        env[n] = graph.node_copy(n, lambda a: x if a is t else arg(a))
                    else:
                        raise refuse(self.model, f"{n.name} {ops.where(n)} makes a tensor like one a part never sees")
                elif n not in self.flow or n in self.shapes:
                    env[n] = graph.node_copy(n, arg)  # a parameter, a constant, or a size: made where used
                elif self._same(n, inp):
                    # Only shape reads get here (values come from nodes copied before): same shape, same sizes.
                    env[n] = x
                elif self.pos[n] > start:
                    raise refuse(self.model, f"{ops.describe(n, self.gm)} is needed outside its part of the graph")
                else:
                    raise refuse(self.model, f"a size of {ops.describe(n, self.gm)} is read across a unit boundary")
            return env[n]

        for n in nodes:
            env[n] = arg(n) if n in self.shapes else graph.node_copy(n, arg)
        last = out
        for t in tail:
            (src,) = self.tensor_inputs(t)
            env.setdefault(src, env[last] if last in env else arg(last))
            env[t] = graph.node_copy(t, arg) if keep(t) else env[src]
            last = t
        graph.output(arg(last))
        ops.clone_if_written(graph, x, self.gm)
        targets = {str(n.target) for n in graph.nodes if n.op in ("call_module", "get_attr")} - {"sizes"}
        root: dict[str, object] = {t: ops.fetch(self.gm, t) for t in targets}
        if any(n.op == "call_module" and n.target == "sizes" for n in graph.nodes):
            root["sizes"] = self.sizes
        return fx.GraphModule(root, graph, class_name=f"{type(self.model).__name__}Part")

    def _same(self, a: fx.Node, b: fx.Node) -> bool:
        return self.same.find(a) is self.same.find(b)

    def modules(self, nodes: list[fx.Node]) -> list[nn.Module]:
        return [m for m in (ops.module_of(n, self.gm) for n in nodes) if m is not None]

    def layers(self, nodes: list[fx.Node]) -> list[tuple[int, int]]:
        """Input and output widths of the layers among ``nodes`` (modules; aten convs, linears, norms)."""
        return [w for w in (ops.layer_widths(n, self.gm) for n in nodes) if w is not None]

    def _channels(self, residual: list[fx.Node], shortcut: list[fx.Node], kind: str) -> tuple[int, int]:
        """Input and output width from the first and last Linear / Conv layer of the branches."""
        layers = self.layers(residual) or self.layers(shortcut)
        first = next((w for w, _ in layers if w), 0)
        last = next((w for _, w in reversed(layers) if w), 0)
        if kind == "identity":
            first = last = first or last
        return first, last

    def _path_of(self, nodes: list[fx.Node]) -> str:
        """The deepest module path that every parameterised op of the nodes lies under ("" if none)."""
        paths = [str(n.target).split(".") for n in nodes if n.op == "call_module"]
        paths += [str(n.target).split(".")[:-1] for n in nodes if n.op == "get_attr"]
        # The parameters an (aten) op reads: ``layer1.0.conv1.weight`` lies under ``layer1.0.conv1``.
        paths += [
            str(a.target).split(".")[:-1]
            for n in nodes if ops.aten_name(n) is not None
            for a in n.all_input_nodes if a.op == "get_attr"
        ]
        prefix: list[str] = []
        for parts in zip(*paths, strict=False):
            if len(set(parts)) != 1:
                break
            prefix.append(parts[0])
        return ".".join(prefix) if paths else ""

    def _children(self, unit: Found) -> dict[str, int]:
        """Parameters per child of the unit's path that its residual branch uses (to tell units apart)."""
        out: dict[str, int] = {}
        residual = unit.residual
        if not isinstance(residual, fx.GraphModule):
            return out
        depth = len(unit.name.split(".")) if unit.name else 0
        for n in residual.graph.nodes:
            if n.op in ("call_module", "get_attr"):
                parts = str(n.target).split(".")
                if len(parts) > depth:
                    target = ops.fetch(self.gm, str(n.target))
                    size = sum(p.numel() for p in target.parameters()) if isinstance(target, nn.Module) else (
                        target.numel() if hasattr(target, "numel") else 0
                    )
                    out[parts[depth]] = out.get(parts[depth], 0) + int(size)
        return out


def _named(found: list[Found], children: list[dict[str, int]]) -> list[Found]:
    """Unique names: a path shared by several units gets the child holding most of each one's parameters."""
    from dataclasses import replace

    count: dict[str, int] = {}
    for u in found:
        count[u.name] = count.get(u.name, 0) + 1
    names = []
    for i, (u, kids) in enumerate(zip(found, children, strict=True)):
        name = u.name or f"unit{i}"
        if count[u.name] > 1 and kids:
            name = f"{u.name}.{max(kids, key=kids.__getitem__)}" if u.name else max(kids, key=kids.__getitem__)
        names.append(name)
    seen: dict[str, int] = {}
    out = []
    for u, name in zip(found, names, strict=True):
        seen[name] = seen.get(name, 0) + 1
        out.append(replace(u, name=name if seen[name] == 1 else f"{name}#{seen[name]}"))
    return out
