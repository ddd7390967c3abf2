"""Units named by the user (``units=["layer1.0", ...]``): where discovery is coarse or wrong.

Each named submodule must be one residual unit by itself: traced alone, its whole forward is
``post(shortcut(x) + residual(x))`` (discovery finds exactly one unit in it, with nothing
before or after). The model is traced with those submodules kept as single calls, and its
graph is cut at them: what comes before the first is the stem, what lies between two is a
transition (one non-deletable edge), what follows the last is the head. Every piece calls the
model's own submodules: the model is shared, never copied or changed.
"""

from __future__ import annotations

import functools

from torch import fx, nn

from resnet_probe.adapters import fx as discovered
from resnet_probe.adapters.tracing import (
    _autowrap_functions,
    _autowrap_modules,
    _concrete_args,
    _leaf_types,
    _Tracer,
)
from resnet_probe.errors import AdapterError, first_line
from resnet_probe.structure import Fn, Topology, Unit, identity

FAMILY = "named"
NOTE = (
    "Units named by the user (units=...): each named module is one residual unit, found in its own traced "
    "graph; the layers between them are transitions, never deleted."
)


def build_named(model: nn.Module, names: list[str]) -> Topology:
    """The topology whose units are exactly the submodules ``names``, in order.

    Example:
        >>> topo = build_named(torchvision.models.resnet18(), ["layer1.0", "layer1.1"])
        >>> [u.name for u in topo.units]
        ['layer1.0', 'layer1.1']
    """
    if not names:
        raise AdapterError("units=: no unit names given; name the residual units' modules in order")
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise AdapterError(f"units=: {twice!r} is named twice")
    found = [_one_unit(model, i, name) for i, name in enumerate(names)]
    stem, transitions, head = _cut(model, names)
    units: list[Unit] = []
    stage = 1
    for i, unit in enumerate(found):
        if i > 0 and (i in transitions or unit.downsampling):
            stage += 1
        units.append(_renumbered(unit, i, stage))
    return Topology(FAMILY, stem, tuple(units), head, model, transitions, (NOTE,),
                    reader=functools.partial(build_named, names=list(names)))


def _renumbered(unit: Unit, index: int, stage: int) -> Unit:
    from dataclasses import replace

    return replace(unit, index=index, stage=stage)


def _one_unit(model: nn.Module, index: int, name: str) -> Unit:
    """The named submodule as one unit, or an AdapterError saying why it is not one."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        children = ", ".join(n for n, _ in list(model.named_children())[:6])
        raise AdapterError(
            f"units=: {type(model).__name__} has no submodule {name!r} (its children: {children})"
        ) from None
    if module is model:
        raise AdapterError(f"units=: {name!r} is the whole model, not one unit of it")
    try:
        inner = discovered.build(module)
    except AdapterError as exc:
        raise AdapterError(f"units=: {name!r} is not a residual unit ({exc})") from None
    whole = (
        inner.n_units == 1 and not inner.transitions and inner.stem is identity and inner.head is identity
    )
    if not whole:
        raise AdapterError(
            f"units=: the output of {name!r} ({type(module).__name__}) is not its input plus a residual branch "
            f"(its graph holds {inner.n_units} residual additions"
            + (" and layers around them" if inner.n_units == 1 else "") + "); name modules y = x + f(x)"
        )
    unit = inner.units[0]
    from dataclasses import replace

    return replace(unit, name=name, module=module, index=index)


def _cut(model: nn.Module, names: list[str]) -> tuple[Fn, dict[int, Fn], Fn]:
    """Stem, transitions and head: the model's graph cut at the calls of the named modules."""
    tracer = _Tracer(_leaf_types(), _autowrap_modules(), _autowrap_functions())
    tracer._opaque_paths.update(names)  # the named units stay single calls
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        graph = tracer.trace(model, concrete_args=_concrete_args(model) or None)
    except AdapterError:
        raise
    except Exception as exc:  # fx raises anything from TraceError to the model's own errors
        raise AdapterError(
            f"units=: torch.fx cannot trace {type(model).__name__}.forward ({first_line(exc)})"
        ) from None
    finally:
        for m, flag in flags:
            m.training = flag
    nodes = _needed(graph)
    calls = [n for n in nodes if n.op == "call_module" and n.target in names]
    order = [str(n.target) for n in calls]
    if order != names:
        missing = [n for n in names if n not in order]
        if missing:
            raise AdapterError(f"units=: {missing[0]!r} is never called by {type(model).__name__}.forward")
        raise AdapterError(f"units=: the forward calls them in the order {', '.join(order)}, not as given")
    placeholder = next(n for n in nodes if n.op == "placeholder")
    output = next(n for n in nodes if n.op == "output")
    segment_of: dict[fx.Node, int] = {}
    k = 0
    for n in nodes:
        if n in calls:
            k += 1
        segment_of[n] = k
    pieces: list[Fn] = []
    for k in range(len(calls) + 1):
        start = placeholder if k == 0 else calls[k - 1]
        end = output.args[0] if k == len(calls) else _only_input(calls[k], names[k])
        members = [n for n in nodes if segment_of[n] == k and n not in calls and n.op not in ("placeholder", "output")]
        pieces.append(_piece(model, start, end, members, names, k))
    stem, *between, head = pieces
    transitions = {i + 1: fn for i, fn in enumerate(between) if fn is not identity}
    return stem, transitions, head


def _needed(graph: fx.Graph) -> list[fx.Node]:
    """The graph's nodes that the output depends on (shape asserts and other dead code dropped)."""
    every = list(graph.nodes)
    output = next(n for n in every if n.op == "output")
    needed = {output}
    for n in reversed(every):
        if n in needed:
            needed.update(n.all_input_nodes)
    return [n for n in every if n in needed or n.op == "placeholder"]


def _only_input(call: fx.Node, name: str) -> fx.Node:
    if len(call.args) != 1 or call.kwargs or not isinstance(call.args[0], fx.Node):
        raise AdapterError(f"units=: {name!r} is called with more than one input; a unit takes one tensor")
    return call.args[0]


def _piece(
    model: nn.Module, start: fx.Node, end: object, members: list[fx.Node], names: list[str], k: int
) -> Fn:
    """The nodes between two unit calls as a function of the earlier call's output."""
    if end is start:
        return identity
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {start: graph.placeholder("x")}
    own = set(members)

    def lookup(a: fx.Node) -> fx.Node:
        if a in env:
            return env[a]
        where = "the stem" if k == 0 else f"the layers after {names[k - 1]!r}"
        raise AdapterError(
            f"units=: {where} read {a.name}, computed before {'the input' if k == 0 else repr(names[k - 1])}: "
            "the named units do not form a chain (a skip across units?)"
        )

    for n in members:
        if n not in own:
            continue
        env[n] = graph.node_copy(n, lookup)
    if not isinstance(end, fx.Node):
        raise AdapterError("units=: the model does not return one tensor")
    graph.output(lookup(end))
    return fx.GraphModule(model, graph, class_name=f"Piece{k}")
