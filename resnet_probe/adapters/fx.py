"""Generic fallback: find the residual units of an unknown model by tracing it with torch.fx.

The traced graph is read in its own (topological) order. A *cut* is a node whose value is the
only one still needed by the rest of the graph: the graph between two consecutive cuts is a
function of one tensor. A unit is such a stretch that ends in ``a + b`` of two computed
values, ``x + f(x)`` or ``proj(x) + f(x)``; activations applied right after the addition are
the unit's ``post`` (``relu(x + f(x))``), any other layers between units become non-deletable
transitions, what precedes the first unit is the stem and what follows the last is the head.
Every part is a :class:`torch.fx.GraphModule` cut out of the traced graph that calls the
model's own submodules and parameters, so the model is shared, never copied or changed.

Only chain-structured models are read: a residual addition that does not close a unit (a
skip across several units, a residual inside a residual branch) is refused with one
:class:`AdapterError` line, as is a model that torch.fx cannot trace.
"""

from __future__ import annotations

import dataclasses
import inspect
import operator
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import fx, nn

from resnet_probe.errors import AdapterError
from resnet_probe.topology import Fn, Topology, Unit, identity

FAMILY = "fx"

FALLBACK_NOTE = (
    "Read by the generic torch.fx fallback: a unit is a stretch of the traced graph that takes one "
    "value and ends in the addition of two values computed from it."
)
POST_NOTE = "Activations right after an addition are the unit's post (y = act(shortcut(x) + residual(x)))."
TRANSITION_NOTE = "Other layers between units are transitions: one non-deletable edge before the next unit."
PROJECTION_NOTE = (
    "Where neither operand of the addition is the unit's input, the operand with fewer operations is taken as "
    "the (projection) shortcut; a layer both branches read first (a pre-activation norm) comes before the unit, "
    "as the previous unit's post or a transition."
)
CHANNELS_NOTE = (
    "Channel counts come from the first and last Linear / Conv layer of each branch (0 where there is none); "
    "strides are not known and read as 1."
)
EVAL_NOTE = "The model is traced in eval mode: Python-level `self.training` checks take their eval branch."
NO_RESPONSES_NOTE = "Units read by tracing expose no response layers, so response-std does not apply."

_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_ADD_METHODS = ("add", "add_")
_ACTIVATION_MODULES = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.SELU,
    nn.CELU, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.PReLU,
)
_ACTIVATION_FUNCTIONS = (
    torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, F.gelu, F.silu, F.mish, torch.tanh, torch.sigmoid,
    F.leaky_relu, F.elu, F.selu, F.hardswish, F.hardsigmoid, F.hardtanh, F.softplus,
)
_ACTIVATION_METHODS = ("relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_")
_INPLACE_OPERATORS = (
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv, operator.imod,
    operator.ipow, operator.iand, operator.ior, operator.ixor, operator.ilshift, operator.irshift,
)


def matches(model: nn.Module) -> bool:
    """Any module: the fallback is tried last, after every named adapter refused the model."""
    return isinstance(model, nn.Module)


def build(model: nn.Module) -> Topology:
    """The topology of a chain-structured residual model, found by tracing.

    Example:
        >>> topo = build(MyResidualMLP())  # x = x + mlp_i(x) in a loop
        >>> [u.name for u in topo.units]
        ['blocks.0', 'blocks.1', 'blocks.2']
    """
    gm = _trace(model)
    return _Reader(model, gm).topology()


def refuse(model: nn.Module, reason: str) -> AdapterError:
    """The one-line error for a model this fallback cannot read."""
    reason = " ".join(reason.split())
    return AdapterError(
        f"could not find residual units in {type(model).__name__} by tracing: {reason}; "
        "write an adapter (see resnet_probe/adapters/)"
    )


def _trace(model: nn.Module) -> fx.GraphModule:
    """``symbolic_trace`` in eval mode, optional forward arguments fixed to their defaults."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())[1:]
    except (TypeError, ValueError):
        params = []
    concrete: dict[str, Any] = {}
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.default is p.empty:
            raise refuse(model, f"forward takes more than one input ({p.name!r} has no default)")
        concrete[p.name] = p.default
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        return fx.symbolic_trace(model, concrete_args=concrete or None)
    except Exception as exc:  # fx raises anything from TraceError to the model's own errors
        text = str(exc).strip().splitlines()
        first = text[0] if text else type(exc).__name__
        raise refuse(model, f"torch.fx cannot trace it ({type(exc).__name__}: {first[:160]})") from None
    finally:
        for m, flag in flags:
            m.training = flag


def _is_add(node: fx.Node) -> bool:
    """``a + b`` without extra arguments (no ``alpha``)."""
    if node.op == "call_function" and node.target in _ADD_FUNCTIONS:
        return len(node.args) == 2 and not node.kwargs
    return node.op == "call_method" and node.target in _ADD_METHODS and len(node.args) == 2 and not node.kwargs


def _fetch(root: nn.Module, target: str) -> Any:
    """The attribute at a dotted path."""
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


class _Reader:
    """One pass over a traced graph: flow, liveness, cuts, then the topology."""

    def __init__(self, model: nn.Module, gm: fx.GraphModule) -> None:
        self.model, self.gm = model, gm
        self.nodes = list(gm.graph.nodes)
        self.pos = {n: i for i, n in enumerate(self.nodes)}
        # Arguments fixed to their defaults stay placeholders that carry the default: constants.
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        required = [n for n in placeholders[1:] if not n.args]
        if not placeholders or required:
            raise refuse(model, f"forward takes {1 + len(required)} tensor inputs, not one")
        self.input = placeholders[0]
        self.output = next(n for n in self.nodes if n.op == "output")
        result = self.output.args[0]
        if not isinstance(result, fx.Node):
            raise refuse(model, f"forward returns a {type(result).__name__}, not one tensor")
        self.result = result
        # Flow nodes depend on the input; the rest (parameters, constants) is copied where used.
        self.flow: set[fx.Node] = {self.input}
        for n in self.nodes:
            if n.op not in ("placeholder", "output") and any(a in self.flow for a in n.all_input_nodes):
                self.flow.add(n)
        if result not in self.flow:
            raise refuse(model, "its output does not depend on its input")
        # Ancestors among flow nodes, as bit sets over graph positions.
        self.anc: dict[fx.Node, int] = {}
        for n in self.nodes:
            if n in self.flow:
                bits = 0
                for a in n.all_input_nodes:
                    if a in self.flow:
                        bits |= self.anc[a] | (1 << self.pos[a])
                self.anc[n] = bits

    def is_residual_add(self, node: fx.Node) -> bool:
        """An addition of two values that both depend on the input."""
        return node in self.flow and _is_add(node) and all(
            isinstance(a, fx.Node) and a in self.flow for a in node.args
        )

    def cuts(self) -> list[fx.Node]:
        """Flow nodes after which no other flow value is still needed, in graph order."""
        last = {n: max((self.pos[u] for u in n.users), default=self.pos[n]) for n in self.flow}
        ending: dict[int, list[fx.Node]] = {}
        for n, p in last.items():
            ending.setdefault(p, []).append(n)
        live: set[fx.Node] = set()
        out = []
        for p, n in enumerate(self.nodes):
            if n in self.flow and last[n] > p:
                live.add(n)
            live.difference_update(ending.get(p, ()))
            if n in self.flow and live == {n}:
                out.append(n)
        return out

    def between(self, a: fx.Node, b: fx.Node) -> list[fx.Node]:
        """Flow nodes after ``a`` up to and including ``b``, in graph order."""
        return [n for n in self.nodes[self.pos[a] + 1 : self.pos[b] + 1] if n in self.flow]

    def is_activation(self, node: fx.Node, prev: fx.Node) -> bool:
        """An elementwise activation of ``prev`` alone."""
        if [a for a in node.all_input_nodes if a in self.flow] != [prev]:
            return False
        if node.op == "call_module":
            return isinstance(self.gm.get_submodule(str(node.target)), _ACTIVATION_MODULES)
        if node.op == "call_function":
            return node.target in _ACTIVATION_FUNCTIONS
        return node.op == "call_method" and node.target in _ACTIVATION_METHODS

    def topology(self) -> Topology:
        """Stem, units (with post and transitions) and head of the traced model."""
        cuts = self.cuts()
        closing = [(x, a) for x, a in zip(cuts, cuts[1:], strict=False) if self.is_residual_add(a)]
        unit_adds = {a for _, a in closing}
        self._check_chain(unit_adds, closing)
        # Activations right after each add are its post; the unit ends at the last of them.
        bounds = []
        for x, a in closing:
            end = a
            for n in cuts[cuts.index(a) + 1 :]:
                if self.between(end, n) != [n] or not self.is_activation(n, end):
                    break
                end = n
            bounds.append((x, a, end))
        units: list[Unit] = []
        transitions: dict[int, Fn] = {}
        names: dict[str, int] = {}
        prev_end = self.input
        stage = 1
        for i, (x, a, end) in enumerate(bounds):
            if i > 0 and x is not prev_end:
                transitions[i] = self.extract(prev_end, self.between(prev_end, x), x)
            unit = self.unit(i, x, a, end, names)
            if i > 0 and (i in transitions or unit.downsampling):
                stage += 1
            units.append(unit if unit.stage == stage else _restage(unit, stage))
            prev_end = end
        first = bounds[0][0]
        stem = self.extract(self.input, self.between(self.input, first), first)
        head_nodes = [n for n in self.nodes[self.pos[prev_end] + 1 : self.pos[self.output]] if n in self.flow]
        head = self.extract(prev_end, head_nodes, self.result)
        return Topology(FAMILY, stem, tuple(units), head, self.model, transitions, self._notes(units, transitions))

    def _check_chain(self, unit_adds: set[fx.Node], closing: list[tuple[fx.Node, fx.Node]]) -> None:
        """Refuse residual additions that do not close a unit of the chain."""
        adds = [n for n in self.nodes if self.is_residual_add(n)]
        if not adds:
            raise refuse(self.model, "no addition of two computed values (x + f(x)) in the traced graph")
        for n in adds:
            if n in unit_adds:
                continue
            p, q = n.args
            assert isinstance(p, fx.Node) and isinstance(q, fx.Node)
            if self.anc[q] >> self.pos[p] & 1 or self.anc[p] >> self.pos[q] & 1:
                raise refuse(
                    self.model,
                    f"its additions do not form a chain of units ({n.name} = {p.name} + {q.name} is a skip "
                    "connection that other values cross: a residual inside a residual branch, or one spanning "
                    "several units)",
                )
        if not closing:
            raise refuse(self.model, "no addition closes a unit (some other value stays in use across each one)")

    def unit(self, index: int, x: fx.Node, add: fx.Node, end: fx.Node, names: dict[str, int]) -> Unit:
        """One unit from its input node, its addition and the end of its post activations."""
        body = self.between(x, add)[:-1]
        p, q = add.args
        assert isinstance(p, fx.Node) and isinstance(q, fx.Node)
        in_body = 0
        for n in body:
            in_body |= 1 << self.pos[n]

        def size(v: fx.Node) -> int:
            return bin((self.anc[v] | 1 << self.pos[v]) & in_body).count("1")

        if q is x:
            p, q = q, p
        if p is x:
            s, r = p, q
        elif size(p) == size(q):
            raise refuse(
                self.model,
                f"cannot tell the shortcut from the residual branch at {add.name}: both operands take {size(p)} "
                "operations",
            )
        else:
            s, r = (p, q) if size(p) < size(q) else (q, p)
        s_bits = (self.anc[s] | 1 << self.pos[s]) & in_body
        r_bits = (self.anc[r] | 1 << self.pos[r]) & in_body
        shortcut_only = s_bits & ~r_bits
        residual_nodes = [n for n in body if not shortcut_only >> self.pos[n] & 1]
        residual = self.extract(x, residual_nodes, r)
        shortcut: Fn
        if s is x:
            kind, shortcut, shortcut_nodes = "identity", identity, []
        else:
            shortcut_nodes = [n for n in body if s_bits >> self.pos[n] & 1]
            shortcut = self.extract(x, shortcut_nodes, s)
            passthrough = all(isinstance(m, nn.Identity) for m in self._modules(shortcut_nodes))
            kind = "identity" if passthrough and all(n.op == "call_module" for n in shortcut_nodes) else "projection"
        post = self.extract(add, self.between(add, end), end)
        in_ch, out_ch = self._channels(residual_nodes, shortcut_nodes, kind)
        name = self._name(index, residual_nodes, names)
        module = self._module(name, residual)
        return Unit(
            index=index,
            name=name,
            stage=1,
            in_channels=in_ch,
            out_channels=out_ch,
            stride=1,
            downsampling=kind == "projection" or in_ch != out_ch,
            shortcut_kind=kind,
            shortcut=shortcut,
            residual=residual,
            post=post,
            module=module,
        )

    def extract(self, inp: fx.Node, nodes: list[fx.Node], out: fx.Node) -> Fn:
        """``nodes`` as a GraphModule of one input ``inp`` returning ``out``; identity when empty."""
        if out is inp:
            return identity
        graph = fx.Graph()
        x = graph.placeholder("x")
        if any(inp in n.all_input_nodes and self._inplace(n) for n in nodes):
            # An in-place op on the input would corrupt activations the executor shares between plans.
            x = graph.call_method("clone", (x,))
        env: dict[fx.Node, fx.Node] = {inp: x}

        def arg(n: fx.Node) -> fx.Node:
            if n not in env:
                if n in self.flow:
                    raise refuse(self.model, f"{n.name} is needed outside its part of the graph")
                env[n] = graph.node_copy(n, arg)  # a parameter or a constant: copied where used
            return env[n]

        for n in nodes:
            env[n] = graph.node_copy(n, arg)
        graph.output(env[out])
        targets = {str(n.target) for n in graph.nodes if n.op in ("call_module", "get_attr")}
        root = {t: _fetch(self.gm, t) for t in targets}
        return fx.GraphModule(root, graph, class_name=f"{type(self.model).__name__}Part")

    def _inplace(self, node: fx.Node) -> bool:
        """Whether ``node`` may write into one of its inputs."""
        if node.op == "call_module":
            return getattr(self.gm.get_submodule(str(node.target)), "inplace", False) is True
        if node.op == "call_method":
            name = str(node.target)
            return name.endswith("_") and not name.startswith("_")
        if node.op != "call_function":
            return False
        if node.target in _INPLACE_OPERATORS:
            return True
        fn_name = getattr(node.target, "__name__", "")
        if fn_name.endswith("_") and not fn_name.startswith("_"):
            return True
        try:
            bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return node.kwargs.get("inplace") is True
        return bound.arguments.get("inplace") is True

    def _modules(self, nodes: Iterable[fx.Node]) -> list[nn.Module]:
        return [self.gm.get_submodule(str(n.target)) for n in nodes if n.op == "call_module"]

    def _channels(self, residual: list[fx.Node], shortcut: list[fx.Node], kind: str) -> tuple[int, int]:
        """Input and output width from the first and last Linear / Conv layer of the branches."""
        mods = self._modules(residual) or self._modules(shortcut)
        ins = [_width(m, "in") for m in mods]
        outs = [_width(m, "out") for m in mods]
        first = next((w for w in ins if w), 0)
        last = next((w for w in reversed(outs) if w), 0)
        if kind == "identity":
            first = first or last
            last = first
        return first, last

    def _name(self, index: int, nodes: list[fx.Node], names: dict[str, int]) -> str:
        """The deepest module path that every parameterised op of the residual branch lies under."""
        paths = []
        for n in nodes:
            if n.op == "call_module":
                paths.append(str(n.target).split("."))
            elif n.op == "get_attr":
                paths.append(str(n.target).split(".")[:-1])
        prefix: list[str] = []
        if paths:
            for parts in zip(*paths, strict=False):
                if len(set(parts)) != 1:
                    break
                prefix.append(parts[0])
        base = ".".join(prefix) or f"unit{index}"
        seen = names.get(base, 0)
        names[base] = seen + 1
        return base if seen == 0 else f"{base}#{seen + 1}"

    def _module(self, name: str, residual: Fn) -> nn.Module:
        """The model's submodule of that name, else the residual branch's GraphModule."""
        try:
            module = self.model.get_submodule(name)
        except AttributeError:
            module = None
        if isinstance(module, nn.Module):
            return module
        return residual if isinstance(residual, nn.Module) else self.model

    def _notes(self, units: list[Unit], transitions: dict[int, Fn]) -> tuple[str, ...]:
        notes = [FALLBACK_NOTE]
        if any(u.post is not identity for u in units):
            notes.append(POST_NOTE)
        if transitions:
            notes.append(TRANSITION_NOTE)
        if any(u.shortcut_kind == "projection" for u in units):
            notes.append(PROJECTION_NOTE)
        notes += [CHANNELS_NOTE, EVAL_NOTE, NO_RESPONSES_NOTE]
        return tuple(notes)


def _width(module: nn.Module, side: str) -> int:
    """``in_features`` / ``in_channels`` (or the ``out`` ones) of a layer, 0 when it has none."""
    for attr in (f"{side}_features", f"{side}_channels"):
        value = getattr(module, attr, None)
        if isinstance(value, int):
            return value
    return 0


def _restage(unit: Unit, stage: int) -> Unit:
    """The same unit in another stage."""
    return dataclasses.replace(unit, stage=stage)

