"""torch.export programs: residual units read from the exported graph itself, never re-traced.

``ep.module()`` of a :class:`torch.export.ExportedProgram` (what
:func:`resnet_probe.models.exported.read_exported` gives for a ``.pt2`` file) is an
:class:`torch.fx.GraphModule` whose graph calls aten ops (``aten.conv2d.default``,
``aten.add.Tensor``, ``aten.relu_.default``, ...) on ``get_attr`` parameters, with no
call_module nodes. The discovery reader (:mod:`resnet_probe.adapters.discovery`) reads that
graph as it reads a traced one (:mod:`resnet_probe.adapters.graph_ops` knows both spellings of
each op), from a copy made for reading: its one output is the tensor itself (not the flat tuple
an export returns), its batch norms and dropout are in eval semantics (see
:func:`~resnet_probe.adapters.graph_ops.to_eval`), and each symbolic size an op needs (a
dynamic batch) is read from that op's own input rather than from the program's input, where
the two agree symbolically. Units are named after the module paths the export recorded
(``nn_module_stack``), like the original model's (``layer1.0``). Every part calls the program's
own parameters: the model is shared, never copied or changed.
"""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from resnet_probe.adapters import fx as fx_adapter
from resnet_probe.adapters import graph_ops as ops
from resnet_probe.adapters.discovery import discover
from resnet_probe.adapters.tracing import refuse
from resnet_probe.structure import Topology

__all__ = ["FAMILY", "build", "matches", "reading_copy"]

FAMILY = "torch.export"

EXPORT_NOTE = (
    "Read from a torch.export graph (aten ops), as exported: a unit is a stretch of the graph that takes one "
    "tensor and ends in the addition of two tensors computed from it; names are the module paths the export "
    "recorded."
)
EVAL_NOTE = (
    "The exported graph runs in eval semantics whatever train()/eval() say: batch norms use their running "
    "statistics and dropout is off."
)
SWITCHED_NOTE = "The program was exported in training mode; switched to eval semantics: {ops}."
STATIC_NOTE = (
    "The program was exported for inputs of shape {shape} only: run it on batches of {batch}, or export it with "
    "a dynamic batch (torch.export.Dim)."
)
NO_RESPONSES_NOTE = "Units read from an exported graph expose no response layers, so response-std does not apply."

_SIZE_ARITHMETIC = (
    operator.add, operator.sub, operator.mul, operator.floordiv, operator.truediv, operator.mod, operator.neg,
)


def matches(model: nn.Module) -> bool:
    """A GraphModule whose graph calls aten ops: a ``torch.export`` program's ``module()``."""
    return isinstance(model, fx.GraphModule) and any(ops.aten_name(n) is not None for n in model.graph.nodes)


def build(model: nn.Module) -> Topology:
    """The topology of an exported residual network, read from its graph.

    Example:
        >>> topo = build(torch.export.export(net.eval(), (x,)).module())
        >>> [u.name for u in topo.units][:2]
        ['layer1.0', 'layer1.1']
    """
    assert isinstance(model, fx.GraphModule)
    gm, switched = reading_copy(model)
    found = discover(model, gm)
    units, transitions = fx_adapter.assemble(model, found)
    notes = [EXPORT_NOTE, *fx_adapter.structure_notes(units, transitions, found), EVAL_NOTE]
    if switched:
        notes.append(SWITCHED_NOTE.format(ops=", ".join(ops.counted(switched))))
    if found.nested:
        notes.append(fx_adapter.nested_note(found.nested))
    shape = _input_shape(gm)
    if shape and all(isinstance(d, int) for d in shape):
        notes.append(STATIC_NOTE.format(shape=tuple(shape), batch=shape[0]))
    notes.append(NO_RESPONSES_NOTE)
    # ep.module() refuses train() / eval() (it raises NotImplementedError); the executor sets eval
    # mode around every run, so such a module is represented by the reading copy, which shares
    # every parameter and buffer with it.
    owner: nn.Module = gm if {"train", "eval"} & set(vars(model)) else model
    return Topology(FAMILY, found.stem, tuple(units), found.head, owner, transitions, tuple(notes),
                    unread=len(found.nested))


def reading_copy(model: fx.GraphModule) -> tuple[fx.GraphModule, tuple[str, ...]]:
    """The exported graph as discovery reads it, and what :func:`~graph_ops.to_eval` switched off.

    A copy of the graph (the model's own graph is never changed) over the model's own
    parameters, with one tensor output, eval semantics and local size reads.
    """
    graph = fx.Graph()
    result = graph.graph_copy(model.graph, {})  # the output node is not copied: one tensor is output below
    if isinstance(result, (tuple, list)):
        if len(result) != 1:
            raise refuse(model, f"the exported program returns {len(result)} values, not one tensor")
        result = result[0]
    if not isinstance(result, fx.Node):
        raise refuse(model, "the exported program does not return a tensor")
    graph.output(result)
    gm = fx.GraphModule(model, graph, class_name=f"{type(model).__name__.removesuffix('Impl')}Reading")
    switched = ops.to_eval(gm)
    cannot = [s.removeprefix("cannot: ") for s in switched if s.startswith("cannot: ")]
    if cannot:
        raise refuse(
            model, f"it was exported in training semantics ({', '.join(sorted(set(cannot)))}); export it after "
            "model.eval()"
        )
    _localize_sizes(gm)
    gm.recompile()
    return gm, tuple(switched)


def _localize_sizes(gm: fx.GraphModule) -> None:
    """Each symbolic size a tensor op takes is read from that op's own input where it has that size.

    torch.export reads a dynamic size once, from the program's input, and hands it to every op
    that needs it (a ``view`` in the head): that would keep the input alive across every unit.
    The recorded symbolic shapes say which input dimension of the op is the same size.
    """
    for n in list(gm.graph.nodes):
        if n.op != "call_function" or ops.is_shape_read(n, gm):
            continue
        tensors = [a for a in n.all_input_nodes if isinstance(a.meta.get("val"), torch.Tensor)]
        if not tensors or not any(_is_symint(a) for a in n.all_input_nodes):
            continue
        made: dict[fx.Node, fx.Node] = {}

        def local(a: fx.Node, n: fx.Node = n, tensors: list[fx.Node] = tensors, made: dict = made) -> fx.Node:
            if not _is_symint(a):
                return a
            if a in made:
                return made[a]
            expr = a.meta["val"].node.expr
            for t in tensors:
                for d, size in enumerate(t.meta["val"].shape):
                    if isinstance(size, torch.SymInt) and size.node.expr == expr:
                        with gm.graph.inserting_before(n):
                            new = gm.graph.call_function(torch.ops.aten.sym_size.int, (t, d))
                        new.meta["val"] = a.meta["val"]
                        made[a] = new
                        return new
            if a.op == "call_function" and a.target in _SIZE_ARITHMETIC:
                with gm.graph.inserting_before(n):
                    new = gm.graph.node_copy(a, local)
                made[a] = new
                return new
            return a

        n.args = fx.map_arg(n.args, local)
        n.kwargs = fx.map_arg(n.kwargs, local)


def _input_shape(gm: fx.GraphModule) -> tuple[object, ...]:
    """The recorded shape of the graph's (first) input, ints and SymInts; empty where none is recorded."""
    first = next((n for n in gm.graph.nodes if n.op == "placeholder"), None)
    value = first.meta.get("val") if first is not None else None
    return tuple(value.shape) if isinstance(value, torch.Tensor) else ()


def _is_symint(node: fx.Node) -> bool:
    return isinstance(node.meta.get("val"), torch.SymInt)
