"""torch.export programs (``.pt2``): read without running code from the file.

A ``.pt2`` file from ``torch.export.save(torch.export.export(model, (x,)), "net.pt2")`` is a
zip archive: ``models/model.json`` (the graph of aten ops, its signature, symbolic shapes,
per-node metadata), ``data/weights/`` (a JSON table and each tensor's raw bytes),
``data/constants/`` (the same for tensor constants), ``data/sample_inputs/model.pt`` (the example
inputs, a ``torch.save`` pickle) and a few version records.

``torch.export.load`` on its own is **not** safe on a file from someone else; its docstring
says so (torch 2.14, ``torch/export/__init__.py`` and ``torch/export/pt2_archive/_package.py``,
``torch/_export/serde/serialize.py``, ``torch/export/_unlift.py``, ``torch/fx/graph.py``):

* weights and constants marked ``use_pickle`` are read with ``torch.load(weights_only=False)``,
  ``opaque_obj_*`` constants with ``pickle.loads`` and ``custom_obj_*`` ones with the TorchScript
  unpickler;
* the sample inputs (present in every file) and the weights of older layouts go through
  ``deserialize_torch_artifact``, which retries with ``weights_only=False`` when the safe
  unpickler refuses;
* every symbolic size (``expr_str``) is parsed by ``sympy.sympify``, which ``eval``\\ s it;
* ``ep.module()`` ``exec``\\ s the file's ``guards_code`` strings, and the code that fx generates
  for the module embeds strings from the file (parameter names inside ``getattr(..., "...")``,
  argument names, pytree keys, a summary of each node's ``stack_trace`` in a comment);
* a ``data/aotinductor/`` entry makes it load a compiled shared library.

With torch 2.14.1, files changed from a real export in the first four ways (a symbolic size, a
guard, the sample inputs, one weight marked ``use_pickle``) did run their code in plain
``torch.export.load(path).module()``; tests/adapters/test_exported.py gives each of these and
three more to :func:`read_exported`, and none runs.

So :func:`read_exported` never hands the file to torch. It reads the zip itself, accepts only
the entries ``torch.export.save`` writes for a plain ``nn.Module`` (raw tensor bytes, JSON, the
sample inputs), parses the JSON and checks every string in it: names and op targets are
restricted to ``[A-Za-z0-9_.:@+-]``, parameter paths to dotted identifiers, the symbolic sizes
to sympy constructor calls (checked with :mod:`ast` before sympy sees them), the input and
output specs to one tensor in and out; free-text node metadata (stack traces) and the guards
are dropped, only ``nn_module_stack`` (the module paths units are named by) is kept, op targets
are aten ops or the few builtins the export verifier allows. The sample inputs are read with
``torch.load(weights_only=True)`` and written again by ``torch.save``, tensors only. From the
checked parts it writes a new archive in memory and gives *that* to ``torch.export.load``: what
torch deserialises is a graph and raw tensors, nothing it would execute. ``ep.module`` is then
called with ``check_guards=False`` (no guard code is generated), the graph is checked again
(aten ops only, one tensor input) and put in eval semantics.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
import re
import sys
import warnings
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import fx, nn

from resnet_probe.errors import CheckpointError
from resnet_probe.models.checkpoints import file_sha256

__all__ = ["FORMAT", "INFO_KEY", "ExportedFile", "exported_info", "read_exported"]

FORMAT = "torch.export"
INFO_KEY = "resnet_probe.export"  # where read_exported keeps the ExportedFile, in module.meta

_EXPECTED = "expected a program written by torch.export.save"
_NAME = re.compile(r"[A-Za-z0-9_.:@+\-]*")  # every name, target, version, device, ... in the program
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PART = re.compile(r"[A-Za-z0-9_]+")  # one part of a parameter path (``layer1.0.conv1.weight``)
_SYMBOL = re.compile(r"[a-z]+[0-9]+")  # sympy symbols of export's shape environment (s77, u0)
_NUMBER = re.compile(r"[0-9.eE+\-]+")
_MAX_STRING = 4096
_MAX_EXPR = 10_000

_ARCHIVE = {"archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id"}
_MODEL = "models/model.json"
_WEIGHTS_CONFIG = "data/weights/model_weights_config.json"
_CONSTANTS_CONFIG = "data/constants/model_constants_config.json"
_SAMPLE_INPUTS = "data/sample_inputs/model.pt"
_WEIGHT = re.compile(r"data/weights/(weight_[0-9]+)")
_CONSTANT = re.compile(r"data/constants/(tensor_[0-9]+)")
_REFUSED_DIRS = (
    ("data/aotinductor/", "it holds AOTInductor-compiled code (a shared library)"),
    ("data/executorch/", "it holds an ExecuTorch program"),
    ("data/mtia", "it holds MTIA-compiled code"),
    ("xl_model_weights/", "it keeps its weights outside the archive's tensor table"),
)
_FREE_TEXT = {"as_string", "as_strings"}  # string arguments of ops: printed with repr() by fx
# call_function targets besides aten ops: the builtins torch's export verifier allows.
_BUILTIN_TARGETS = {
    f"_operator.{n}" for n in (
        "getitem", "add", "mul", "sub", "truediv", "ge", "le", "gt", "lt", "eq", "ne", "floordiv", "mod", "and_",
        "or_", "not_", "pow", "neg", "abs", "lshift", "rshift",
    )
} | {"math.ceil", "math.floor", "math.trunc", "builtins.round"} | {
    f"torch.{n}" for n in ("sym_int", "sym_float", "sym_ite", "sym_max", "sym_min", "sym_not", "sym_sqrt", "sym_sum")
}
_SYMPY_CALLS = {
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Max", "Min", "Mod", "Abs", "floor", "ceiling",
    "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan",
    "Equality", "Unequality", "And", "Or", "Not", "Piecewise", "ExprCondPair",
    # torch.utils._sympy.functions, as the deserialiser names them
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv", "LShift",
    "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity",
}
_SYMPY_NAMES = {"oo", "zoo", "nan", "true", "false", "True", "False"}
_EXPR_NODES = (
    ast.Expression, ast.Call, ast.Name, ast.Load, ast.Constant, ast.keyword, ast.BinOp, ast.UnaryOp, ast.Compare,
    ast.Tuple, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd, ast.Not,
    ast.Invert, ast.BitAnd, ast.BitOr, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq,
)


@dataclass(frozen=True)
class ExportedFile:
    """What a results.json says about a torch.export file: format, hash, the torch that saved it, shapes.

    ``input_shape`` / ``output_shape`` hold None for a dynamic dimension (an exported
    ``torch.export.Dim``); ``switched_to_eval`` names the ops that ran in training semantics in
    the file and were switched to eval (empty for a program exported after ``model.eval()``).
    """

    path: str
    sha256: str
    torch_version: str | None
    schema_version: str | None
    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]
    switched_to_eval: tuple[str, ...] = ()
    format: str = FORMAT

    @property
    def num_outputs(self) -> int | None:
        """The width of the last output dimension (the number of classes of a classifier)."""
        return self.output_shape[-1] if self.output_shape else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"format": "torch.export", "sha256": ..., "torch_version": ..., ...}``."""
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        out["output_shape"] = list(self.output_shape)
        out["switched_to_eval"] = list(self.switched_to_eval)
        return out


def exported_info(model: nn.Module) -> ExportedFile | None:
    """The :class:`ExportedFile` record of a module :func:`read_exported` gave, else None."""
    meta = getattr(model, "meta", None)
    info = meta.get(INFO_KEY) if isinstance(meta, dict) else None
    return info if isinstance(info, ExportedFile) else None


def read_exported(path: str | Path) -> nn.Module:
    """The runnable module of a ``torch.export`` program, in eval semantics, without running code from the file.

    The file is checked and rebuilt before torch deserialises it (see the module docstring);
    the result is ``ep.module(check_guards=False)``, an :class:`torch.fx.GraphModule` of aten
    ops, whose ``train()`` / ``eval()`` only set flags (the graph's semantics are fixed: batch
    norms use running statistics, dropout is off, nothing updates a buffer). Its
    :class:`ExportedFile` record is ``exported_info(module)``. A missing, damaged or foreign
    file, or one that holds anything but a graph and tensors, raises one
    :class:`CheckpointError` line.

    Example:
        >>> torch.export.save(torch.export.export(net.eval(), (x,)), "net.pt2")
        >>> module = read_exported("net.pt2")
        >>> exported_info(module).to_dict()["format"]
        'torch.export'
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file ({_EXPECTED})")
    try:
        sha = file_sha256(path)
        entries = _entries(path)
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read ({type(exc).__name__}; {_EXPECTED})") from None
    program = _Program(path, entries)
    with _quiet():  # torch.load warns about the pickle protocol of sample inputs
        archive = program.rebuilt()
    ep = _load(path, archive)
    _check_graph(path, ep)
    try:
        with _quiet():
            module = ep.module(check_guards=False)
    except Exception as exc:  # torch raises anything from unlifting an odd graph
        raise CheckpointError(f"{path}: torch cannot build a module from its program ({_reason(exc)})") from None
    for name in ("train", "eval"):  # ep.module() makes both raise NotImplementedError
        if name in vars(module):
            delattr(module, name)
    from resnet_probe.adapters.graph_ops import counted, to_eval

    switched = to_eval(module)
    cannot = sorted({s.removeprefix("cannot: ") for s in switched if s.startswith("cannot: ")})
    if cannot:
        raise CheckpointError(
            f"{path} was exported in training semantics ({', '.join(cannot)}); export it after model.eval()"
        )
    module.meta[INFO_KEY] = ExportedFile(
        path=str(path),
        sha256=sha,
        torch_version=program.torch_version,
        schema_version=program.schema_version,
        input_shape=_shape_of(ep, "input"),
        output_shape=_shape_of(ep, "output"),
        switched_to_eval=counted(switched),
    )
    return module


# -- the archive ---------------------------------------------------------------------------


def _entries(path: Path) -> dict[str, bytes]:
    """The archive's entries by their name below its root folder, each checked for damage."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if not infos or min(i.header_offset for i in infos) != 0:
                # The directory found is not the file's own: a truncated file whose end now lies in the
                # sample inputs, themselves a zip archive stored inside it.
                raise zipfile.BadZipFile("the archive's directory is not the file's")
            roots = {i.filename.split("/", 1)[0] for i in infos}
            if len(roots) != 1 or not all("/" in i.filename for i in infos):
                raise CheckpointError(f"{path} is not a torch.export program: its entries lie in no one folder "
                                      f"({_EXPECTED})")
            names = [i.filename.split("/", 1)[1] for i in infos]
            if len(set(names)) != len(names):
                raise CheckpointError(f"{path} is not a torch.export program: it holds an entry twice ({_EXPECTED})")
            _refuse_foreign(path, names)
            if any(i.compress_type != zipfile.ZIP_STORED for i in infos):
                raise CheckpointError(f"{path}: its entries are compressed, which torch.export.save never does "
                                      f"({_EXPECTED})")
            out = {}
            for info, name in zip(infos, names, strict=True):
                if name.endswith("/") or name.startswith("extra/"):
                    continue  # folders; extra files are free text the program does not need
                out[name] = zf.read(info)  # checks each entry's CRC
            return out
    except (zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, RuntimeError):
        if magic == b"PK\x03\x04":
            raise CheckpointError(
                f"{path} is damaged or truncated: its zip archive is incomplete or fails its checksums ({_EXPECTED})"
            ) from None
        raise CheckpointError(f"{path} is not a torch.export program: not a zip archive ({_EXPECTED})") from None


def _refuse_foreign(path: Path, names: list[str]) -> None:
    """One line for an archive that is something else, or holds what this reader will not load."""
    if "data.pkl" in names:
        raise CheckpointError(
            f"{path} is a torch.save file (a pickled object, e.g. a state dict), not a torch.export program "
            f"({_EXPECTED}; a state dict loads with its model class)"
        )
    if "version" in names or any(n.startswith("serialized_") for n in names):
        raise CheckpointError(
            f"{path} is a torch.export program in the layout of torch 2.7 and before, which stores its tensors as "
            f"pickles; save it again with this torch ({_EXPECTED})"
        )
    if _MODEL not in names:
        extra = "several programs" if any(n.startswith("models/") for n in names) else "no program"
        raise CheckpointError(f"{path} is not a torch.export program: it holds {extra} (no {_MODEL}; {_EXPECTED})")
    for name in names:
        for prefix, why in _REFUSED_DIRS:
            if name.startswith(prefix):
                raise CheckpointError(f"{path}: {why}; only a graph and tensors are read ({_EXPECTED})")
        if "custom_obj_" in name or "opaque_obj_" in name:
            raise CheckpointError(f"{path}: it holds pickled Python objects as constants; only a graph and tensors "
                                  f"are read ({_EXPECTED})")
    known = _ARCHIVE | {_MODEL, _WEIGHTS_CONFIG, _CONSTANTS_CONFIG, _SAMPLE_INPUTS}
    unknown = [
        n for n in names
        if n not in known and not n.endswith("/") and not n.startswith("extra/")
        and not _WEIGHT.fullmatch(n) and not _CONSTANT.fullmatch(n)
    ]
    if unknown:
        raise CheckpointError(
            f"{path}: {len(unknown)} entr{'y' if len(unknown) == 1 else 'ies'} that torch.export.save does not write "
            f"for a module (e.g. pickled weights of an older layout); only a graph and tensors are read ({_EXPECTED})"
        )


class _Program:
    """The checked parts of one archive, and a new archive written from them alone."""

    def __init__(self, path: Path, entries: dict[str, bytes]) -> None:
        self.path, self.entries = path, entries
        self.torch_version: str | None = None
        self.schema_version: str | None = None

    def bad(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.path} is not a torch.export program this reader accepts: {what} ({_EXPECTED})")

    def rebuilt(self) -> bytes:
        from torch.export.pt2_archive._package import PT2ArchiveWriter

        e = self.entries
        if e.get("archive_format") != b"pt2":
            raise self.bad("its archive_format record is not pt2")
        from torch.export.pt2_archive.constants import ARCHIVE_VERSION_VALUE

        if e.get("archive_version") != ARCHIVE_VERSION_VALUE.encode():
            raise self.bad(f"its archive version is not {ARCHIVE_VERSION_VALUE}, the one this torch reads")
        if e.get("byteorder", sys.byteorder.encode()) != sys.byteorder.encode():
            raise self.bad(f"its tensors are not in this machine's byte order ({sys.byteorder})")
        model = self.program(self.json(_MODEL))
        weights = self.table(_WEIGHTS_CONFIG, _WEIGHT, "weight_", required=True)
        constants = self.table(_CONSTANTS_CONFIG, _CONSTANT, "tensor_", required=False)
        inputs = self.sample_inputs()
        buffer = io.BytesIO()
        with PT2ArchiveWriter(buffer) as w:
            w.write_string(_MODEL, json.dumps(model))
            for config, (table, files) in ((_WEIGHTS_CONFIG, weights), (_CONSTANTS_CONFIG, constants)):
                w.write_string(config, json.dumps(table))
                for name in files:
                    w.write_bytes(name, e[name])
            w.write_bytes(_SAMPLE_INPUTS, inputs)
        return buffer.getvalue()

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.entries[name].decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise self.bad(f"{name} is not JSON") from None

    def table(self, name: str, pattern: re.Pattern[str], prefix: str, required: bool) -> tuple[dict, list[str]]:
        """A weights / constants table: raw tensors only (no pickles), each file present, names checked."""
        if name not in self.entries:
            if required:
                raise self.bad(f"it has no {name}")
            return {"config": {}}, []
        table = self.json(name)
        config = table.get("config") if isinstance(table, dict) and set(table) == {"config"} else None
        if not isinstance(config, dict):
            raise self.bad(f"{name} is not a table of tensors")
        files = []
        folder = name.rsplit("/", 1)[0]
        for fqn, meta in config.items():
            _check_path(self, fqn)
            if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
                raise self.bad("it stores a tensor as a pickle (a tensor subclass?); only raw tensors are read")
            file = meta.get("path_name")
            if not isinstance(file, str) or not file.startswith(prefix) or f"{folder}/{file}" not in self.entries:
                raise self.bad(f"{name} names a tensor file it does not hold")
            if not pattern.fullmatch(f"{folder}/{file}"):
                raise self.bad(f"{name} names a tensor file of an unknown kind")
            files.append(f"{folder}/{file}")
            self.walk(meta)
        return table, sorted(set(files))

    def sample_inputs(self) -> bytes:
        """The example inputs, read by the safe unpickler and written again: a tuple of tensors, no kwargs."""
        raw = self.entries.get(_SAMPLE_INPUTS)
        if raw is None:
            raise self.bad("it has no sample inputs")
        try:
            value = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
        except Exception:  # the safe unpickler refuses anything but tensors and containers
            raise self.bad("its sample inputs are not plain tensors") from None
        ok = (
            isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], tuple) and value[1] == {}
            and all(isinstance(t, torch.Tensor) for t in value[0])
        )
        if not ok:
            raise self.bad("its sample inputs are not a tuple of tensors")
        args = tuple(t.detach().clone() for t in value[0])  # exact tensors: no storage shared with a bigger batch
        out = io.BytesIO()
        torch.save((args, {}), out)
        return out.getvalue()

    # -- models/model.json ---------------------------------------------------------------------

    def program(self, model: Any) -> dict[str, Any]:
        if not isinstance(model, dict) or not isinstance(model.get("graph_module"), dict):
            raise self.bad(f"{_MODEL} holds no graph")
        from torch._export.serde.schema import SCHEMA_VERSION

        version = model.get("schema_version")
        major = version.get("major") if isinstance(version, dict) else None
        minor = version.get("minor") if isinstance(version, dict) else None
        saved = model.get("torch_version")
        self.torch_version = saved if isinstance(saved, str) and _NAME.fullmatch(saved) else None
        if not isinstance(major, int) or not isinstance(minor, int):
            raise self.bad("it records no export schema version")
        self.schema_version = f"{major}.{minor}"
        if major != SCHEMA_VERSION[0]:
            raise CheckpointError(
                f"{self.path} was saved by torch {self.torch_version or '(unknown)'} with export schema "
                f"{self.schema_version}; this torch ({torch.__version__}) reads schema {SCHEMA_VERSION[0]}.x"
            )
        model = dict(model)
        model["guards_code"] = []  # Python source that ep.module() would exec; never needed here
        gm = dict(model["graph_module"])
        if gm.get("treespec_namedtuple_fields") not in (None, {}):
            raise self.bad("its inputs or outputs are named tuples")
        gm["metadata"] = {}
        graph = gm.get("graph")
        if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list):
            raise self.bad(f"{_MODEL} holds no graph")
        if graph.get("custom_obj_values"):
            raise self.bad("its graph passes Python objects between ops")
        graph = dict(graph)
        graph["nodes"] = [self.node(n) for n in graph["nodes"]]
        gm["graph"] = graph
        model["graph_module"] = gm
        self.walk(model)
        return model

    def node(self, node: Any) -> dict[str, Any]:
        if not isinstance(node, dict) or not isinstance(node.get("target"), str):
            raise self.bad("a node of its graph has no op")
        target = node["target"]
        if not (target.startswith("torch.ops.aten.") or target in _BUILTIN_TARGETS) or not _NAME.fullmatch(target):
            kind = "a higher-order op" if target.startswith("torch.ops.higher_order.") else "an op outside aten"
            raise self.bad(f"its graph calls {kind}; only aten ops are read")
        node = dict(node)
        meta = node.get("metadata")
        stack = meta.get("nn_module_stack") if isinstance(meta, dict) else None
        # Only the module paths are kept (units are named by them); stack traces and the rest go.
        node["metadata"] = {"nn_module_stack": stack} if _module_stack_ok(stack) else {}
        return node

    def walk(self, value: Any, key: str = "") -> Any:
        """Check every string below ``value`` by the field it is in; map every device to the CPU."""
        if isinstance(value, dict):
            if key in ("device", "as_device") and set(value) <= {"type", "index"}:
                value["type"], value["index"] = "cpu", None  # map_location="cpu" for the whole program
            for k, v in list(value.items()):
                if not isinstance(k, str) or not _NAME.fullmatch(k) or len(k) > _MAX_STRING:
                    raise self.bad("a field of its program has a name outside [A-Za-z0-9_.:@+-]")
                if k in ("as_custom_obj", "as_graph", "as_operator", "custom_obj"):
                    raise self.bad("its graph passes Python objects, subgraphs or ops between ops")
                self.walk(v, k)
        elif isinstance(value, list):
            for v in value:
                self.walk(v, key)
        elif isinstance(value, str):
            self.string(key, value)
        elif value is not None and not isinstance(value, (bool, int, float)):
            raise self.bad("its program holds a value JSON does not have")
        return value

    def string(self, key: str, value: str) -> None:
        if key == "expr_str":
            if not _expression_ok(value):
                raise self.bad("a symbolic size is not a sympy expression of sizes")
        elif key in ("in_spec", "out_spec"):
            if not _spec_ok(value, inputs=key == "in_spec"):
                raise self.bad("it does not take one tensor and return one (or a tuple of tensors)")
        elif key == "forward_arg_names":
            if not (_IDENT.fullmatch(value) and value.isidentifier()):
                raise self.bad("an argument name is not an identifier")
        elif key in ("parameter_name", "buffer_name", "tensor_constant_name", "fqn"):
            _check_path(self, value)
        elif key == "nn_module_stack":
            pass  # checked (or dropped) by node()
        elif key in _FREE_TEXT:
            if len(value) > _MAX_STRING or not value.isascii() or not value.isprintable() or "\\" in value:
                raise self.bad("a string argument holds characters outside printable ASCII")
        elif len(value) > _MAX_STRING or not _NAME.fullmatch(value):
            raise self.bad("a name or value in its program holds characters outside [A-Za-z0-9_.:@+-]")


def _check_path(program: _Program, fqn: object) -> None:
    """A parameter path: dotted parts of letters, digits and underscores, none a dunder."""
    parts = fqn.split(".") if isinstance(fqn, str) else []
    if fqn != "" and not (parts and all(_PART.fullmatch(p) and not p.startswith("__") for p in parts)):
        raise program.bad("a parameter or module path is not a dotted name")


def _module_stack_ok(stack: object) -> bool:
    """``key,path,type;key,path,type``: each part a plain name (else the stack is dropped)."""
    if not isinstance(stack, str) or len(stack) > 16 * _MAX_STRING:
        return False
    for entry in stack.split(";"):
        parts = entry.split(",")
        if len(parts) != 3 or not all(_NAME.fullmatch(p) for p in parts):
            return False
    return True


def _expression_ok(text: str) -> bool:
    """A symbolic size as sympy would read it: constructor calls, symbols, numbers, arithmetic, no more.

    ``sympy.sympify`` evaluates its string as Python; this allows only calls of the sympy classes
    the export's shape environment prints (``Symbol('s77', positive=True, integer=True)``), bare
    symbols, number literals and operators.
    """
    if len(text) > _MAX_EXPR:
        return False
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError):
        return False
    for node in ast.walk(tree):
        if not isinstance(node, _EXPR_NODES):
            return False
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _SYMPY_CALLS:
                return False
        elif isinstance(node, ast.Name):
            if not (node.id in _SYMPY_CALLS or node.id in _SYMPY_NAMES or _SYMBOL.fullmatch(node.id)):
                return False
        elif isinstance(node, ast.keyword):
            if node.arg is None or not re.fullmatch(r"[a-z_]+", node.arg) or not isinstance(node.value, ast.Constant):
                return False
        elif isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, str):
                if not (_IDENT.fullmatch(v) or _NUMBER.fullmatch(v)):
                    return False
            elif not isinstance(v, (bool, int, float)):
                return False
    return True


_LEAF: dict[str, object] = {"type": None, "context": None, "children_spec": []}


def _spec_ok(text: str, inputs: bool) -> bool:
    """The pytree spec of one tensor in (``((x,), {})``), or of one tensor or a tuple of tensors out."""
    try:
        version, spec = json.loads(text)
    except (ValueError, TypeError):
        return False
    if version != 1 or not isinstance(spec, dict):
        return False
    if not inputs:
        if spec == _LEAF:
            return True
        children = spec.get("children_spec")
        return (
            spec.get("type") in ("builtins.tuple", "builtins.list") and spec.get("context") == "null"
            and isinstance(children, list) and len(children) >= 1 and all(c == _LEAF for c in children)
        )
    children = spec.get("children_spec")
    if spec.get("type") != "builtins.tuple" or spec.get("context") != "null" or not isinstance(children, list):
        return False
    if len(children) != 2:
        return False
    args, kwargs = children
    return (
        isinstance(args, dict) and args.get("type") == "builtins.tuple" and args.get("context") == "null"
        and args.get("children_spec") == [_LEAF]
        and kwargs == {"type": "builtins.dict", "context": "[]", "children_spec": []}
    )


# -- loading and checking the program ------------------------------------------------------


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """torch's export loggers and warnings muted: a refusal is one line, never a logged traceback."""
    loggers = [logging.getLogger(n) for n in (
        "torch.export", "torch._export", "torch.export.pt2_archive._package", "torch._export.serde.serialize",
        "torch.export._unlift", "torch.fx.experimental.symbolic_shapes",
    )]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _reason(exc: BaseException) -> str:
    from resnet_probe.errors import first_line

    return first_line(exc, 120)


def _load(path: Path, archive: bytes) -> torch.export.ExportedProgram:
    try:
        with _quiet():
            return torch.export.load(io.BytesIO(archive))
    except Exception as exc:  # deserialisation raises anything from KeyError to SerializeError
        raise CheckpointError(
            f"{path}: torch {torch.__version__} cannot deserialise its program ({_reason(exc)}; {_EXPECTED})"
        ) from None


def _check_graph(path: Path, ep: torch.export.ExportedProgram) -> None:
    """After loading: aten ops (and the verifier's builtins) only, one tensor in, one out, no state updates."""
    from torch.export.graph_signature import InputKind, OutputKind

    allowed_inputs = {InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR, InputKind.USER_INPUT}
    kinds = [s.kind for s in ep.graph_signature.input_specs]
    if any(k not in allowed_inputs for k in kinds) or kinds.count(InputKind.USER_INPUT) != 1:
        raise CheckpointError(f"{path}: its program does not take one tensor (and parameters) as input")
    outputs = [s.kind for s in ep.graph_signature.output_specs]
    if any(k != OutputKind.USER_OUTPUT for k in outputs):
        raise CheckpointError(
            f"{path}: its program updates buffers or inputs when it runs (exported in training mode?); "
            "export it after model.eval()"
        )
    for module in ep.graph_module.modules():
        if not isinstance(module, fx.GraphModule):
            continue
        for n in module.graph.nodes:
            if n.op in ("call_module", "call_method"):
                raise CheckpointError(f"{path}: its graph calls modules or methods; only aten ops are read")
            target = n.target
            if n.op == "call_function" and not (
                isinstance(target, torch._ops.OpOverload) and target.namespace == "aten"
            ) and f"{getattr(target, '__module__', '')}.{getattr(target, '__name__', '')}" not in _BUILTIN_TARGETS:
                raise CheckpointError(f"{path}: its graph calls an op outside aten; only aten ops are read")


def _shape_of(ep: torch.export.ExportedProgram, side: str) -> tuple[int | None, ...]:
    """The user input's / output's shape, None for a symbolic dimension."""
    nodes = list(ep.graph.nodes)
    if side == "input":
        names = set(ep.graph_signature.user_inputs)
        node = next((n for n in nodes if n.op == "placeholder" and n.name in names), None)
    else:
        out = nodes[-1].args[0] if nodes and nodes[-1].op == "output" else ()
        node = out[0] if isinstance(out, (tuple, list)) and out else None
    value = node.meta.get("val") if isinstance(node, fx.Node) else None
    shape = getattr(value, "shape", ())
    return tuple(int(d) if isinstance(d, int) else None for d in shape)
