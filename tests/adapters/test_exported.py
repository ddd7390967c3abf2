"""torch.export programs: read without running code from the file, residual units read from the aten graph."""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch import Tensor, nn
from torchvision import models

import resnet_probe as rp
from resnet_probe.adapters import build_topology
from resnet_probe.adapters import exported as adapter
from resnet_probe.adapters import fx as fx_adapter
from resnet_probe.errors import CheckpointError
from resnet_probe.executor import Executor, Plan
from resnet_probe.models.checkpoints import file_sha256
from resnet_probe.models.exported import FORMAT, exported_info, read_exported
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.structure import Topology

FIELDS = ("name", "stage", "in_channels", "out_channels", "stride", "downsampling", "shortcut_kind")


def _fields(topology: Topology) -> list[tuple[object, ...]]:
    return [tuple(getattr(u, f) for f in FIELDS) for u in topology.units]


def _export(model: nn.Module, x: Tensor, path: Path, dynamic: bool = True, decompose: bool = False) -> Path:
    shapes = ({0: torch.export.Dim("batch")},) if dynamic else None
    ep = torch.export.export(model, (x,), dynamic_shapes=shapes)
    torch.export.save(ep.run_decompositions() if decompose else ep, path)
    return path


@pytest.fixture(scope="module")
def zoo() -> LoadedModel:
    """The shipped akamaster ResNet-20 (trained weights)."""
    return rp.load_model("resnet20")


@pytest.fixture(scope="module")
def images() -> Tensor:
    """Eight normalised CIFAR-10 test images from the shipped sample."""
    batch = next(rp.load_data("cifar10-sample").batches(64))
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    return x[:8].clone()


@pytest.fixture(scope="module")
def r20_file(zoo: LoadedModel, images: Tensor, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ResNet-20 exported with a dynamic batch, as a user saves it."""
    return _export(zoo.model.eval(), images[:2].clone(), tmp_path_factory.mktemp("r20") / "net.pt2")


@pytest.fixture(scope="module")
def r20(r20_file: Path) -> nn.Module:
    return read_exported(r20_file)


# -- ResNet-20 -----------------------------------------------------------------------------------


def test_resnet20_units_are_the_zoo_units(r20: nn.Module, zoo: LoadedModel) -> None:
    topo = build_topology(r20)
    assert topo.family == adapter.FAMILY and topo.n_units == 9
    assert [u.name for u in topo.units] == [u.name for u in zoo.topology.units]
    assert _fields(topo) == _fields(zoo.topology)
    for i in (3, 6):  # option A: stride-2 subsample + zero-padded channels, no parameters
        unit = topo.units[i]
        assert unit.downsampling and unit.shortcut_kind == "zero-pad" and unit.stride == 2
        assert unit.out_channels == 2 * unit.in_channels
    assert [u.stage for u in topo.units] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert fx_adapter.ZERO_PAD_NOTE in topo.notes and adapter.EVAL_NOTE in topo.notes
    assert topo.model is r20


def test_resnet20_forward_equals_the_program(r20: nn.Module, zoo: LoadedModel, images: Tensor) -> None:
    topo = build_topology(r20)
    with torch.no_grad():
        out = r20(images)
        torch.testing.assert_close(topo.forward(images), out, atol=1e-5, rtol=0)
        torch.testing.assert_close(out, zoo.model.eval()(images), atol=1e-5, rtol=0)
        torch.testing.assert_close(Executor(topo).forward(images[:3]), out[:3], atol=1e-5, rtol=0)


def test_resnet20_deleting_each_unit_equals_the_zoo(r20: nn.Module, zoo: LoadedModel, images: Tensor) -> None:
    ours, theirs = Executor(build_topology(r20)), Executor(zoo.topology)
    for i in range(9):
        torch.testing.assert_close(
            ours.forward(images, Plan.delete(i)), theirs.forward(images, Plan.delete(i)), atol=1e-4, rtol=0
        )


def test_decomposed_program_reads_the_same(zoo: LoadedModel, images: Tensor, tmp_path: Path) -> None:
    """``ep.run_decompositions()`` (convolution, _native_batch_norm_legit_no_training + getitem, addmm)."""
    path = _export(zoo.model.eval(), images[:2].clone(), tmp_path / "core.pt2", decompose=True)
    topo = build_topology(read_exported(path))
    assert _fields(topo) == _fields(zoo.topology)
    with torch.no_grad():
        torch.testing.assert_close(
            Executor(topo).forward(images, Plan.delete(6)), Executor(zoo.topology).forward(images, Plan.delete(6)),
            atol=1e-4, rtol=0,
        )


def test_record_for_results_json(r20: nn.Module, r20_file: Path) -> None:
    info = exported_info(r20)
    assert info is not None and info.format == FORMAT == "torch.export"
    assert info.sha256 == file_sha256(r20_file) and info.torch_version == torch.__version__
    assert info.input_shape == (None, 3, 32, 32) and info.output_shape == (None, 10) and info.num_outputs == 10
    assert info.switched_to_eval == ()
    assert json.loads(json.dumps(info.to_dict()))["format"] == "torch.export"
    assert exported_info(nn.Linear(2, 2)) is None


def test_model_is_never_changed(r20: nn.Module, images: Tensor) -> None:
    before = {k: v.clone() for k, v in r20.state_dict().items()}
    code = r20.code
    r20.train()
    r20.eval()  # ep.module() raises here; read_exported's module only sets the flag
    topo = build_topology(r20)
    ex = Executor(topo)
    ex.run_plans(images[:2], [Plan(), Plan.delete(0), Plan.delete(3)], reduce=lambda z: z)
    r20(images[:2])
    assert r20.code == code
    after = r20.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    twin = copy.deepcopy(r20)  # what the executor builds on before moving a model to another device
    assert _fields(build_topology(twin)) == _fields(topo)


def test_raw_ep_module_is_read_too(r20_file: Path, zoo: LoadedModel, images: Tensor) -> None:
    """A user's own ``ep.module()`` (guards, NotImplementedError eval()) builds through the reading copy."""
    module = torch.export.load(r20_file).module()
    topo = build_topology(module)
    assert _fields(topo) == _fields(zoo.topology) and topo.model is not module
    with torch.no_grad():
        torch.testing.assert_close(Executor(topo).forward(images), module(images), atol=1e-5, rtol=0)


def test_training_mode_export_is_switched_to_eval(zoo: LoadedModel, images: Tensor, tmp_path: Path) -> None:
    net = copy.deepcopy(zoo.model).train()
    path = _export(net, images[:2].clone(), tmp_path / "train.pt2", dynamic=False)
    module = read_exported(path)
    info = exported_info(module)
    assert info is not None and "batch_norm x19" in info.switched_to_eval
    assert info.input_shape == (2, 3, 32, 32)
    tracked = module.get_buffer("bn1.num_batches_tracked").clone()
    with torch.no_grad():
        torch.testing.assert_close(module(images[:2]), zoo.model.eval()(images[:2]), atol=1e-5, rtol=0)
    assert torch.equal(module.get_buffer("bn1.num_batches_tracked"), tracked)
    topo = build_topology(module)
    assert adapter.STATIC_NOTE.format(shape=(2, 3, 32, 32), batch=2) in topo.notes


# -- torchvision ResNet-18 -----------------------------------------------------------------------


def test_torchvision_resnet18(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = models.resnet18().eval()
    x = torch.randn(2, 3, 64, 64)
    module = read_exported(_export(net, x, tmp_path / "r18.pt2"))
    topo, ref = build_topology(module), build_topology(net)  # ref: the torchvision adapter
    assert topo.n_units == 8 and _fields(topo) == _fields(ref)
    assert [u.shortcut_kind for u in topo.units].count("projection") == 3
    xb = torch.randn(3, 3, 64, 64)  # another batch than the exported one
    ours, theirs = Executor(topo), Executor(ref)
    with torch.no_grad():
        torch.testing.assert_close(topo.forward(xb), module(xb), atol=1e-5, rtol=0)
    for i in range(8):
        torch.testing.assert_close(ours.forward(xb, Plan.delete(i)), theirs.forward(xb, Plan.delete(i)),
                                   atol=1e-4, rtol=0)


# -- files that are not (safe) export programs ---------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo[CheckpointError], path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message and str(path) in message and "torch.export.save" in message
    assert "Traceback" not in message
    return message


def test_random_bytes(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "x.pt2"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError) as exc:
        read_exported(path)
    assert "not a zip archive" in _one_line(exc, path)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_program(r20_file: Path, tmp_path: Path, keep: float, capfd: pytest.CaptureFixture[str]) -> None:
    data = r20_file.read_bytes()
    path = tmp_path / "cut.pt2"
    path.write_bytes(data[: int(len(data) * keep)])  # at 0.999 the end lies in the (zip) sample inputs
    with pytest.raises(CheckpointError) as exc:
        read_exported(path)
    assert "damaged or truncated" in _one_line(exc, path)
    assert capfd.readouterr().err == ""


def test_damaged_byte(r20_file: Path, tmp_path: Path) -> None:
    data = bytearray(r20_file.read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside a weight: the entry's CRC fails
    path = tmp_path / "flip.pt2"
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as exc:
        read_exported(path)
    assert "damaged" in _one_line(exc, path)


def test_state_dict_named_pt2(zoo: LoadedModel, tmp_path: Path) -> None:
    path = tmp_path / "weights.pt2"
    torch.save(zoo.model.state_dict(), path)
    with pytest.raises(CheckpointError) as exc:
        read_exported(path)
    assert "torch.save file" in _one_line(exc, path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.pt2"
    with pytest.raises(CheckpointError) as exc:
        read_exported(path)
    assert "no such file" in _one_line(exc, path)


def _rewrite(source: Path, target: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """A copy of an archive with some entries changed (names keep their root folder)."""
    with zipfile.ZipFile(source) as z:
        entries = {i.filename: z.read(i) for i in z.infolist()}
    change(entries)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return target


def _entry(entries: dict[str, bytes], suffix: str) -> str:
    return next(k for k in entries if k.endswith(suffix))


def _in_model_json(edit: Callable[[dict], None]) -> Callable[[dict[str, bytes]], None]:
    def change(entries: dict[str, bytes]) -> None:
        name = _entry(entries, "models/model.json")
        model = json.loads(entries[name])
        edit(model)
        entries[name] = json.dumps(model).encode()
    return change


class _Touch:
    """A pickle that creates a file when it is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def _payloads(marker: Path) -> dict[str, Callable[[dict[str, bytes]], None]]:
    """Each a way torch.export.load (or ep.module()) would run code from the file: what read_exported must stop."""
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"

    def sympy_size(model: dict) -> None:  # sympy.sympify evaluates every symbolic size
        text = json.dumps(model).replace("Symbol('s", f"{code} or Symbol('s")
        model.clear()
        model.update(json.loads(text))

    def guards(model: dict) -> None:  # ep.module() execs the guards' source
        model["guards_code"] = [f"{code} is None"]

    def stack_trace(model: dict) -> None:  # fx prints a summary into the generated code; \r ends a comment
        for node in model["graph_module"]["graph"]["nodes"]:
            node["metadata"]["stack_trace"] = f'File "a.py", line 1, in f\n    x\r{code}\n'

    def parameter_name(entries: dict[str, bytes]) -> None:  # fx writes getattr(self, "<part>")
        bad = f'weight")+{code}+getattr(self,"x'
        _in_model_json(lambda m: m.update(json.loads(json.dumps(m).replace('"linear.weight"', json.dumps(
            f"linear.{bad}")))))(entries)
        name = _entry(entries, "model_weights_config.json")
        entries[name] = entries[name].replace(b'"linear.weight"', json.dumps(f"linear.{bad}").encode())

    def sample_inputs(entries: dict[str, bytes]) -> None:  # torch retries a refused pickle without weights_only
        entries[_entry(entries, "sample_inputs/model.pt")] = pickle.dumps(_Touch(marker))

    def pickled_weight(entries: dict[str, bytes]) -> None:  # use_pickle weights: torch.load(weights_only=False)
        name = _entry(entries, "model_weights_config.json")
        table = json.loads(entries[name])
        table["config"]["conv1.weight"]["use_pickle"] = True
        entries[name] = json.dumps(table).encode()
        buffer = io.BytesIO()
        torch.save(_Touch(marker), buffer)
        entries[_entry(entries, "data/weights/weight_0")] = buffer.getvalue()

    def compiled(entries: dict[str, bytes]) -> None:  # AOTInductor: a shared library loaded from the archive
        root = _entry(entries, "archive_format").split("/")[0]
        entries[f"{root}/data/aotinductor/model/model.so"] = b"\x7fELF"

    return {
        "sympy size": _in_model_json(sympy_size), "guards": _in_model_json(guards),
        "stack trace": _in_model_json(stack_trace), "parameter name": parameter_name,
        "sample inputs": sample_inputs, "pickled weight": pickled_weight, "compiled code": compiled,
    }


@pytest.mark.parametrize("payload", [
    "sympy size", "guards", "stack trace", "parameter name", "sample inputs", "pickled weight", "compiled code",
])
def test_no_code_from_the_file_runs(r20_file: Path, tmp_path: Path, payload: str, images: Tensor) -> None:
    marker = tmp_path / "ran"
    path = _rewrite(r20_file, tmp_path / "evil.pt2", _payloads(marker)[payload])
    try:
        module = read_exported(path)  # guards and stack traces are dropped: the program itself is fine
    except CheckpointError as exc:
        assert payload not in ("guards", "stack trace")
        message = str(exc)
        assert "\n" not in message and str(path) in message and "pathlib" not in message
    else:
        assert payload in ("guards", "stack trace")
        with torch.no_grad():
            module(images[:2])
            build_topology(module).forward(images[:2])
    assert not marker.exists()


def test_a_program_saved_on_a_gpu_loads_on_the_cpu(r20_file: Path, r20: nn.Module, tmp_path: Path,
                                                   images: Tensor) -> None:
    """Every device of the program is mapped to the CPU (map_location="cpu"); the executor moves it later."""
    def on_cuda(entries: dict[str, bytes]) -> None:
        for name in entries:
            if name.endswith(".json"):
                entries[name] = entries[name].replace(b'"type": "cpu"', b'"type": "cuda"')

    module = read_exported(_rewrite(r20_file, tmp_path / "cuda.pt2", on_cuda))
    assert {p.device.type for p in module.parameters()} == {"cpu"}
    with torch.no_grad():
        torch.testing.assert_close(module(images[:2]), r20(images[:2]), atol=0, rtol=0)
