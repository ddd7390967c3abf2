"""What one node of a traced graph does, as far as discovery needs to know, and two rewrites.

Each predicate answers for a single :class:`torch.fx.Node` of a traced model: an addition, an
elementwise activation, a layout change (reshape, permute, ...), a read of a tensor's shape,
an op that keeps its input's shape, one that may write into its input. The rewrites make
in-place writes explicit data flow and keep a cut-out part from writing into its input.
"""

from __future__ import annotations

import inspect
import operator
import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
ADD_METHODS = ("add", "add_")
ACTIVATION_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.SELU,
    nn.CELU, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.PReLU,
)
ACTIVATION_FUNCTIONS: tuple[Any, ...] = (
    torch.relu, torch.relu_, F.relu, F.relu_, F.relu6, F.gelu, F.silu, F.mish, torch.tanh, torch.sigmoid,
    F.leaky_relu, F.elu, F.selu, F.hardswish, F.hardsigmoid, F.hardtanh, F.softplus,
)
ACTIVATION_METHODS = ("relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_")
PASS_MODULES: tuple[type[nn.Module], ...] = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
NORM_MODULES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm,
)
NORM_FUNCTIONS: tuple[Any, ...] = (F.layer_norm, F.batch_norm, F.group_norm, F.rms_norm, F.dropout)
LAYOUT_METHODS = (
    "view", "reshape", "permute", "transpose", "flatten", "unflatten", "squeeze", "unsqueeze", "contiguous",
    "movedim", "swapaxes", "swapdims",
)
LAYOUT_FUNCTIONS: tuple[Any, ...] = (
    torch.reshape, torch.flatten, torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze, torch.movedim,
    torch.swapaxes, torch.swapdims,
)
LAYOUT_MODULES: tuple[type[nn.Module], ...] = (nn.Flatten, nn.Unflatten)
SHAPE_ATTRIBUTES = ("shape", "ndim", "dtype", "device", "is_cuda", "layout")
SHAPE_METHODS = (
    "size", "dim", "ndimension", "numel", "nelement", "get_device", "element_size",
    "new_zeros", "new_ones", "new_empty", "new_full",
)
SHAPE_FUNCTIONS: tuple[Any, ...] = (torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like, torch.numel)
SCALE_FUNCTIONS: tuple[Any, ...] = (operator.mul, operator.truediv, torch.mul, torch.div)
SCALE_METHODS = ("mul", "div")
INPLACE_OPERATORS: tuple[Any, ...] = (
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv, operator.imod,
    operator.ipow, operator.iand, operator.ior, operator.ixor, operator.ilshift, operator.irshift,
)


def module_of(node: fx.Node, gm: fx.GraphModule) -> nn.Module | None:
    """The submodule a ``call_module`` node calls."""
    return gm.get_submodule(str(node.target)) if node.op == "call_module" else None


def is_add(node: fx.Node) -> bool:
    """``a + b`` without extra arguments (no ``alpha``)."""
    if node.op == "call_function" and node.target in ADD_FUNCTIONS:
        return len(node.args) == 2 and not node.kwargs
    return node.op == "call_method" and node.target in ADD_METHODS and len(node.args) == 2 and not node.kwargs


def _permute_modules() -> tuple[type[nn.Module], ...]:
    misc = sys.modules.get("torchvision.ops.misc")
    return (misc.Permute,) if misc is not None and hasattr(misc, "Permute") else ()


def is_layout(node: fx.Node, gm: fx.GraphModule) -> bool:
    """A reshape, permute, flatten, ...: it commutes with an addition, value for value."""
    if node.op == "call_method":
        return node.target in LAYOUT_METHODS
    if node.op == "call_function":
        return node.target in LAYOUT_FUNCTIONS
    module = module_of(node, gm)
    return isinstance(module, LAYOUT_MODULES + _permute_modules())


def is_elementwise(node: fx.Node, gm: fx.GraphModule) -> bool:
    """An activation, or an op that passes its input through in eval mode (Identity, Dropout)."""
    if node.op == "call_module":
        return isinstance(module_of(node, gm), ACTIVATION_MODULES + PASS_MODULES)
    if node.op == "call_function":
        return node.target in ACTIVATION_FUNCTIONS or node.target is F.dropout
    return node.op == "call_method" and node.target in ACTIVATION_METHODS


def passes_through(node: fx.Node, gm: fx.GraphModule) -> bool:
    """An op that returns its input's values unchanged in eval mode."""
    if node.op == "call_module":
        return isinstance(module_of(node, gm), PASS_MODULES)
    if node.op == "call_function":
        return node.target is F.dropout
    return node.op == "call_method" and node.target in ("contiguous", "clone")


def is_shape_read(node: fx.Node, gm: fx.GraphModule) -> bool:
    """A value that depends on its first argument's shape, dtype or device only."""
    if node.op == "call_function" and node.target is getattr:
        return len(node.args) == 2 and node.args[1] in SHAPE_ATTRIBUTES
    if node.op == "call_method":
        return node.target in SHAPE_METHODS
    return node.op == "call_function" and node.target in SHAPE_FUNCTIONS


def is_size_read(node: fx.Node) -> bool:
    """A read of its first argument's sizes only: ``x.shape``, ``x.size(2)``, ``x.dim()``, ``x.numel()``."""
    if node.op == "call_function" and node.target is getattr:
        return len(node.args) == 2 and node.args[1] in ("shape", "ndim")
    if node.op == "call_method":
        return node.target in ("size", "dim", "ndimension", "numel", "nelement")
    return node.op == "call_function" and node.target is torch.numel


def is_placement_read(node: fx.Node) -> bool:
    """A read of its first argument's dtype or device, the same for every activation of a model."""
    if node.op == "call_function" and node.target is getattr:
        return len(node.args) == 2 and node.args[1] in ("dtype", "device", "is_cuda", "layout")
    return node.op == "call_method" and node.target in ("get_device", "element_size")


def is_scaling(node: fx.Node, flow: set[fx.Node]) -> bool:
    """``x * c`` or ``x / c`` with ``c`` a constant or parameter."""
    if not (
        (node.op == "call_function" and node.target in SCALE_FUNCTIONS)
        or (node.op == "call_method" and node.target in SCALE_METHODS)
    ):
        return False
    return len(node.args) == 2 and sum(isinstance(a, fx.Node) and a in flow for a in node.args) == 1


def is_shape_preserving(node: fx.Node, gm: fx.GraphModule, flow: set[fx.Node]) -> bool:
    """An op whose output has its (one) tensor input's shape: activations, norms, scaling."""
    if is_elementwise(node, gm) or passes_through(node, gm) or is_scaling(node, flow):
        return True
    if node.op == "call_module":
        return isinstance(module_of(node, gm), NORM_MODULES)
    if node.op == "call_function":
        return node.target in NORM_FUNCTIONS
    return False


def may_write_input(node: fx.Node, gm: fx.GraphModule) -> bool:
    """Whether ``node`` may write into its first argument."""
    if node.op == "call_module":
        return getattr(module_of(node, gm), "inplace", False) is True
    if node.op == "call_method":
        name = str(node.target)
        return name.endswith("_") and not name.startswith("_")
    if node.op != "call_function":
        return False
    if node.target in INPLACE_OPERATORS or node.target is operator.setitem:
        return True
    fn_name = getattr(node.target, "__name__", "")
    if fn_name.endswith("_") and not fn_name.startswith("_"):
        return True
    try:
        bound = inspect.signature(node.target).bind(*node.args, **node.kwargs)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return node.kwargs.get("inplace") is True
    return bound.arguments.get("inplace") is True


def width(module: nn.Module, side: str) -> int:
    """``in_features`` / ``in_channels`` (or the ``out`` ones) of a layer, 0 when it has none.

    A block kept whole (conv + norm + act) answers with its first layer's input or its last's output.
    """
    layers = list(module.modules())
    for layer in layers if side == "in" else reversed(layers):
        for attr in (f"{side}_features", f"{side}_channels"):
            value = getattr(layer, attr, None)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    for layer in layers:  # no Linear / Conv (a fused attention function): a norm's width
        if isinstance(layer, nn.modules.batchnorm._NormBase):
            return int(layer.num_features)
        if isinstance(layer, (nn.LayerNorm, nn.RMSNorm)) and layer.normalized_shape:
            return int(layer.normalized_shape[-1])
    return 0


def stride_of(module: nn.Module) -> int:
    """The first spatial stride of a conv or pooling layer, 1 for anything else."""
    if not isinstance(module, (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
        return 1
    stride = module.stride
    value = stride[0] if isinstance(stride, tuple) else stride
    return int(value) if isinstance(value, int) and value > 0 else 1


def where(node: fx.Node) -> str:
    """``in PATH (Type)``: the module a node was traced in."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "in the model's own forward"
    path, kind = list(stack.values())[-1]
    return f"in {path} ({getattr(kind, '__name__', kind)})"


def describe(node: fx.Node, gm: fx.GraphModule) -> str:
    """A value as a reader finds it: the output of a module, the input, or a node and where it was made."""
    if node.op == "call_module":
        return f"the output of {node.target} ({type(module_of(node, gm)).__name__})"
    if node.op == "placeholder":
        return f"the input {node.name}"
    return f"{node.name} {where(node)}"


def thread_in_place_writes(gm: fx.GraphModule) -> fx.Node | None:
    """Later readers of a tensor written in place read the write's result instead: the data flow says so.

    Returns an indexed write (``x[i] = v``) into a computed tensor, which cannot be threaded, or None.
    """
    pos = {n: i for i, n in enumerate(gm.graph.nodes)}
    for n in list(gm.graph.nodes):
        if n.op == "output" or not n.args or not isinstance(n.args[0], fx.Node) or not may_write_input(n, gm):
            continue
        if n.op == "call_function" and n.target is operator.setitem:
            if n.args[0].op != "get_attr":
                return n
            continue
        target = n.args[0]
        for u in list(target.users):
            if u is not n and pos[u] > pos[n]:
                u.replace_input_with(target, n)
    return None


def fetch(root: nn.Module, target: str) -> object:
    """The attribute at a dotted path."""
    obj: object = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def clone_if_written(graph: fx.Graph, x: fx.Node, gm: fx.GraphModule) -> None:
    """Clone the input first where an op may write into it: the executor shares activations between plans."""
    if not any(u.args and u.args[0] is x and may_write_input(u, gm) for u in x.users):
        return
    with graph.inserting_after(x):
        copy = graph.call_method("clone", (x,))
    x.replace_all_uses_with(copy, delete_user_cb=lambda u: u is not copy)
