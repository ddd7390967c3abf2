"""What one node of a traced graph does, as far as discovery needs to know, and three rewrites.

Each predicate answers for a single :class:`torch.fx.Node` of a traced model: an addition, an
elementwise activation, a layout change (reshape, permute, ...), a read of a tensor's shape,
an op that keeps its input's shape, one that may write into its input, a layer's widths and
stride. Two spellings are understood: torch-level ops as ``torch.fx.symbolic_trace`` records
them (``operator.add``, ``torch.relu``, ``nn.Conv2d`` call_module nodes) and the aten ops of a
``torch.export`` graph (``aten.add.Tensor``, ``aten.relu_.default``, ``aten.conv2d.default`` with
its weight a ``get_attr`` node). The rewrites make in-place writes explicit data flow, keep a
cut-out part from writing into its input, and put an exported graph in eval semantics.
"""

from __future__ import annotations

import inspect
import operator
import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch._ops import OpOverload

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

# The same roles among the aten ops of a torch.export graph, by op name (any overload).
ATEN_ADD = frozenset({"add", "add_"})
ATEN_ACTIVATIONS = frozenset({
    "relu", "relu_", "relu6", "gelu", "gelu_", "silu", "silu_", "mish", "mish_", "tanh", "tanh_", "sigmoid",
    "sigmoid_", "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "selu_", "celu", "celu_", "hardswish",
    "hardswish_", "hardsigmoid", "hardsigmoid_", "hardtanh", "hardtanh_", "softplus", "prelu", "_prelu_kernel",
})
ATEN_PASS = frozenset({
    "dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout", "clone", "alias", "detach",
})
ATEN_LAYOUT = frozenset({
    "view", "reshape", "_unsafe_view", "permute", "transpose", "flatten", "unflatten", "squeeze", "unsqueeze",
    "movedim", "swapaxes", "swapdims", "t",
})
ATEN_SIZE_READS = frozenset({"sym_size", "sym_numel"})
ATEN_SHAPE_READS = ATEN_SIZE_READS | frozenset({
    "sym_stride", "sym_storage_offset", "zeros_like", "ones_like", "empty_like", "full_like", "new_zeros",
    "new_ones", "new_empty", "new_full",
})
ATEN_SCALE = frozenset({"mul", "div"})
ATEN_NORMS = frozenset({
    "batch_norm", "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
    "layer_norm", "native_layer_norm", "group_norm", "native_group_norm", "rms_norm", "instance_norm",
})
ATEN_CONVS = frozenset({"conv1d", "conv2d", "conv3d", "convolution", "_convolution"})
ATEN_TRANSPOSED_CONVS = frozenset({"conv_transpose1d", "conv_transpose2d", "conv_transpose3d"})
ATEN_POOLS = frozenset({
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "max_pool3d_with_indices",
    "avg_pool1d", "avg_pool2d", "avg_pool3d",
})
# Their eval-mode switch: (op name, argument); True there means batch statistics / random masks.
ATEN_TRAINING_FLAGS: tuple[tuple[str, str], ...] = (
    ("batch_norm", "training"), ("native_batch_norm", "training"), ("_native_batch_norm_legit", "training"),
    ("instance_norm", "use_input_stats"), ("dropout", "train"), ("feature_dropout", "train"),
    ("alpha_dropout", "train"), ("feature_alpha_dropout", "train"),
)
# Ops that only exist in training semantics (batch statistics returned as new buffers, random masks).
ATEN_TRAINING_ONLY = frozenset({
    "_native_batch_norm_legit_functional", "native_dropout", "bernoulli", "bernoulli_", "rand", "rand_like",
    "randn", "randn_like", "randint", "randint_like", "randperm", "normal",
})


def aten_name(node: fx.Node) -> str | None:
    """``add_`` for a call of ``aten.add_.Tensor``; None for anything that is not an aten op."""
    target = node.target
    if node.op == "call_function" and isinstance(target, OpOverload) and target.namespace == "aten":
        return str(target.overloadpacket.__name__)
    return None


def aten_arg(node: fx.Node, name: str, default: Any = None) -> Any:
    """Argument ``name`` of an aten call, positional or keyword, else its schema default (else ``default``)."""
    target = node.target
    assert isinstance(target, OpOverload)
    for i, arg in enumerate(target._schema.arguments):
        if arg.name == name:
            if i < len(node.args):
                return node.args[i]
            if name in node.kwargs:
                return node.kwargs[name]
            return arg.default_value if arg.has_default_value() else default
    return default


def _writes_first_argument(target: OpOverload) -> bool:
    args = target._schema.arguments
    info = args[0].alias_info if args else None
    return info is not None and info.is_write


def _is_view(target: object) -> bool:
    """An aten op whose result aliases its input (slice, select, view, permute, ...)."""
    if not isinstance(target, OpOverload) or _writes_first_argument(target):
        return False
    returns = target._schema.returns
    return bool(returns) and returns[0].alias_info is not None


def module_of(node: fx.Node, gm: fx.GraphModule) -> nn.Module | None:
    """The submodule a ``call_module`` node calls."""
    return gm.get_submodule(str(node.target)) if node.op == "call_module" else None


def is_add(node: fx.Node) -> bool:
    """``a + b`` without extra arguments (no ``alpha``)."""
    if aten_name(node) in ATEN_ADD:
        return len(node.args) == 2 and bool(node.kwargs.get("alpha", 1) == 1) and set(node.kwargs) <= {"alpha"}
    if node.op == "call_function" and node.target in ADD_FUNCTIONS:
        return len(node.args) == 2 and not node.kwargs
    return node.op == "call_method" and node.target in ADD_METHODS and len(node.args) == 2 and not node.kwargs


def _permute_modules() -> tuple[type[nn.Module], ...]:
    misc = sys.modules.get("torchvision.ops.misc")
    return (misc.Permute,) if misc is not None and hasattr(misc, "Permute") else ()


def is_layout(node: fx.Node, gm: fx.GraphModule) -> bool:
    """A reshape, permute, flatten, ...: it commutes with an addition, value for value."""
    if aten_name(node) is not None:
        return aten_name(node) in ATEN_LAYOUT
    if node.op == "call_method":
        return node.target in LAYOUT_METHODS
    if node.op == "call_function":
        return node.target in LAYOUT_FUNCTIONS
    module = module_of(node, gm)
    return isinstance(module, LAYOUT_MODULES + _permute_modules())


def is_elementwise(node: fx.Node, gm: fx.GraphModule) -> bool:
    """An activation, or an op that passes its input through in eval mode (Identity, Dropout)."""
    if aten_name(node) is not None:
        return aten_name(node) in ATEN_ACTIVATIONS or passes_through(node, gm)
    if node.op == "call_module":
        return isinstance(module_of(node, gm), ACTIVATION_MODULES + PASS_MODULES)
    if node.op == "call_function":
        return node.target in ACTIVATION_FUNCTIONS or node.target is F.dropout
    return node.op == "call_method" and node.target in ACTIVATION_METHODS


def passes_through(node: fx.Node, gm: fx.GraphModule) -> bool:
    """An op that returns its input's values unchanged in eval mode."""
    name = aten_name(node)
    if name is not None:  # dropout only once its train flag is off (see to_eval)
        return name in ATEN_PASS and not (name.endswith("dropout") and aten_arg(node, "train") is not False)
    if node.op == "call_module":
        return isinstance(module_of(node, gm), PASS_MODULES)
    if node.op == "call_function":
        return node.target is F.dropout
    return node.op == "call_method" and node.target in ("contiguous", "clone")


def is_shape_read(node: fx.Node, gm: fx.GraphModule) -> bool:
    """A value that depends on its first argument's shape, dtype or device only."""
    if aten_name(node) is not None:
        return aten_name(node) in ATEN_SHAPE_READS
    if node.op == "call_function" and node.target is getattr:
        return len(node.args) == 2 and node.args[1] in SHAPE_ATTRIBUTES
    if node.op == "call_method":
        return node.target in SHAPE_METHODS
    return node.op == "call_function" and node.target in SHAPE_FUNCTIONS


def is_size_read(node: fx.Node) -> bool:
    """A read of its first argument's sizes only: ``x.shape``, ``x.size(2)``, ``x.dim()``, ``x.numel()``."""
    if aten_name(node) is not None:
        return aten_name(node) in ATEN_SIZE_READS
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
        aten_name(node) in ATEN_SCALE
        or (node.op == "call_function" and node.target in SCALE_FUNCTIONS)
        or (node.op == "call_method" and node.target in SCALE_METHODS)
    ):
        return False
    return len(node.args) == 2 and sum(isinstance(a, fx.Node) and a in flow for a in node.args) == 1


def is_shape_preserving(node: fx.Node, gm: fx.GraphModule, flow: set[fx.Node]) -> bool:
    """An op whose output has its (one) tensor input's shape: activations, norms, scaling."""
    if is_elementwise(node, gm) or passes_through(node, gm) or is_scaling(node, flow):
        return True
    if aten_name(node) is not None:
        return aten_name(node) in ATEN_NORMS
    if node.op == "call_function" and node.target is operator.getitem and node.args[1:] == (0,):
        first = node.args[0]  # the output of a norm that also returns its statistics
        return isinstance(first, fx.Node) and aten_name(first) in ATEN_NORMS
    if node.op == "call_module":
        return isinstance(module_of(node, gm), NORM_MODULES)
    if node.op == "call_function":
        return node.target in NORM_FUNCTIONS
    return False


def may_write_input(node: fx.Node, gm: fx.GraphModule) -> bool:
    """Whether ``node`` may write into its first argument."""
    if isinstance(node.target, OpOverload):
        return node.op == "call_function" and _writes_first_argument(node.target)
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


def is_subsample(node: fx.Node) -> bool:
    """A strided or plain slice of its input (``x[:, :, ::2, ::2]``): values copied, none computed."""
    if aten_name(node) == "slice":
        return True
    if node.op != "call_function" or node.target is not operator.getitem or len(node.args) != 2:
        return False
    index = node.args[1]
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, slice) or p is Ellipsis for p in parts)


def is_zero_pad(node: fx.Node) -> bool:
    """Constant zero padding (``F.pad(x, pad)``, ``aten.pad`` / ``aten.constant_pad_nd`` with value 0)."""
    name = aten_name(node)
    if name == "constant_pad_nd":
        return bool(aten_arg(node, "value", 0) == 0)
    if name == "pad":
        return aten_arg(node, "mode", "constant") == "constant" and aten_arg(node, "value") in (None, 0)
    if node.op != "call_function" or node.target is not F.pad:
        return False
    mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
    value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value")
    return bool(mode == "constant" and value in (None, 0))


def _shape(arg: object, gm: fx.GraphModule) -> tuple[int, ...] | None:
    """The static shape of a parameter (``get_attr``) or of a node's recorded value, else None."""
    if not isinstance(arg, fx.Node):
        return None
    value = fetch(gm, str(arg.target)) if arg.op == "get_attr" else arg.meta.get("val")
    shape = getattr(value, "shape", None)
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return tuple(int(d) for d in shape)


def layer_widths(node: fx.Node, gm: fx.GraphModule) -> tuple[int, int] | None:
    """Input and output width of a layer node (0 where unknown); None for a node that is no layer.

    A call_module node is a layer (its module's ``in_*`` / ``out_*``, see :func:`width`); of an
    aten graph, convolutions and linear maps are (widths from their weights' shapes), and norms
    (their weight's or running mean's length).
    """
    if node.op == "call_module":
        module = module_of(node, gm)
        assert module is not None
        return width(module, "in"), width(module, "out")
    name = aten_name(node)
    if name is None:
        return None
    if name in ATEN_CONVS | ATEN_TRANSPOSED_CONVS:
        w = _shape(aten_arg(node, "weight"), gm)
        groups = aten_arg(node, "groups", 1)
        groups = groups if isinstance(groups, int) else 1
        transposed = name in ATEN_TRANSPOSED_CONVS or aten_arg(node, "transposed", False) is True
        if w is None or len(w) < 2:
            return 0, 0
        return (w[0], w[1] * groups) if transposed else (w[1] * groups, w[0])
    if name == "linear":
        w = _shape(aten_arg(node, "weight"), gm)
        return (w[-1], w[0]) if w is not None and len(w) == 2 else (0, 0)
    if name in ("addmm", "mm"):
        w = _shape(aten_arg(node, "mat2"), gm)
        return (w[0], w[1]) if w is not None and len(w) == 2 else (0, 0)
    if name in ATEN_NORMS:
        if name in ("layer_norm", "native_layer_norm", "rms_norm"):
            shape = aten_arg(node, "normalized_shape")
            n = shape[-1] if isinstance(shape, (list, tuple)) and shape and isinstance(shape[-1], int) else 0
            return n, n
        for arg in ("weight", "running_mean"):
            w = _shape(aten_arg(node, arg), gm)
            if w:
                return w[0], w[0]
        return 0, 0
    return None


def layer_stride(node: fx.Node, gm: fx.GraphModule) -> int:
    """The first spatial stride of a conv or pooling node (module or aten op), 1 for anything else."""
    if node.op == "call_module":
        module = module_of(node, gm)
        return stride_of(module) if module is not None else 1
    name = aten_name(node)
    if name in ATEN_CONVS | ATEN_TRANSPOSED_CONVS:
        stride = aten_arg(node, "stride", 1)
    elif name in ATEN_POOLS:
        stride = aten_arg(node, "stride") or aten_arg(node, "kernel_size")  # [] means: the kernel size
    else:
        return 1
    value = stride[0] if isinstance(stride, (list, tuple)) and stride else stride
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


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
    kind = getattr(kind, "__name__", kind)  # an exported graph records the type as its dotted name
    return f"in {path} ({str(kind).rsplit('.', 1)[-1]})"


def describe(node: fx.Node, gm: fx.GraphModule) -> str:
    """A value as a reader finds it: the output of a module, the input, or a node and where it was made."""
    if node.op == "call_module":
        return f"the output of {node.target} ({type(module_of(node, gm)).__name__})"
    if node.op == "placeholder":
        return f"the input {node.name}"
    return f"{node.name} {where(node)}"


def thread_in_place_writes(gm: fx.GraphModule) -> fx.Node | None:
    """Later readers of a tensor written in place read the write's result instead: the data flow says so.

    Returns an indexed write (``x[i] = v``, or an aten write into a slice or view) into a computed
    tensor, which cannot be threaded, or None.
    """
    pos = {n: i for i, n in enumerate(gm.graph.nodes)}
    for n in list(gm.graph.nodes):
        if n.op == "output" or not n.args or not isinstance(n.args[0], fx.Node) or not may_write_input(n, gm):
            continue
        if n.op == "call_function" and n.target is operator.setitem:
            if n.args[0].op != "get_attr":
                return n
            continue
        if isinstance(n.target, OpOverload) and _is_view(n.args[0].target):
            return n  # the write lands in the view's base too, which later readers do not see
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


def to_eval(gm: fx.GraphModule) -> tuple[str, ...]:
    """Put an exported (aten) graph in eval semantics, in place; returns what it switched off, one item per op.

    Batch norms use their running statistics and dropout is off (their training flag becomes
    False), and in-place updates of buffers that nothing reads (``num_batches_tracked += 1``)
    are dropped: running the graph never changes the model. An op that only exists in training
    semantics (batch statistics returned as new running stats, random masks) is left alone and
    named in the result as ``"cannot: <op>"``.
    """
    switched: list[str] = []
    for n in list(gm.graph.nodes):
        name = aten_name(n)
        if name is None:
            continue
        for op, flag in ATEN_TRAINING_FLAGS:
            if name != op or aten_arg(n, flag) is not True:
                continue
            assert isinstance(n.target, OpOverload)
            index = next(i for i, a in enumerate(n.target._schema.arguments) if a.name == flag)
            if index < len(n.args):
                n.args = (*n.args[:index], False, *n.args[index + 1 :])
            else:
                n.kwargs = {**n.kwargs, flag: False}
            switched.append(name)
        if name in ATEN_TRAINING_ONLY:
            switched.append(f"cannot: {name}")
        elif (
            isinstance(n.target, OpOverload) and _writes_first_argument(n.target) and not n.users
            and isinstance(n.args[0], fx.Node) and n.args[0].op == "get_attr"
        ):
            switched.append(f"{name} of a buffer")
            gm.graph.erase_node(n)
    if switched:
        gm.recompile()
    return tuple(switched)


def counted(items: tuple[str, ...]) -> tuple[str, ...]:
    """``("batch_norm x19", ...)``: equal items of :func:`to_eval`'s answer once, with their count."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return tuple(f"{k} x{v}" if v > 1 else k for k, v in sorted(counts.items()))
