"""The Python face, as short as the CLI: take a model and data as the user holds them, run an analysis.

Example:
    >>> import resnet_probe as rp
    >>> result = rp.lesion("resnet20", "cifar10-sample")      # the shipped weights and images
    >>> result.baseline.correct, result.to_frame().shape      # (776, (10, ...))
    >>> rp.lesion(my_module, DataLoader(my_test_set, 128))    # your own network and loader
    >>> result.save("lesion-resnet20")                        # results.json, report.html, ...

A model is a spec string (``"resnet20"``, ``"timm:resnet50"``), a saved file (``"net.pt2"``,
``"file.py:factory"``), a :class:`LoadedModel`, an ``nn.Module`` of any class or a
``torch.export`` program. Data is a data set name or path, a :class:`DataSource`, an
``(x, y)`` tensor pair, a ``Dataset`` or a ``DataLoader`` (data passed in is taken as given:
already preprocessed). Your model is never changed: it is not moved, copied or put in
another mode, and no hook outlives the call.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar, Union

import torch
from torch import Tensor, nn
from typing_extensions import TypedDict, Unpack

from resnet_probe.analyses.evaluate import EvaluateResult
from resnet_probe.analyses.gradients import GradientsResult
from resnet_probe.analyses.lesion import LesionResult
from resnet_probe.analyses.paths import PathsResult
from resnet_probe.analyses.prune import PruneResult
from resnet_probe.analyses.reorder import ReorderResult
from resnet_probe.analyses.response_std import ResponseStdResult
from resnet_probe.data import DataSource, load_data
from resnet_probe.data.given import GivenSource, given_source
from resnet_probe.errors import DataError, ModelError
from resnet_probe.executor import Executor, Plan
from resnet_probe.metrics import MetricLike
from resnet_probe.models.load import load_model
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.models.module import check_output, from_module, topology_from_units
from resnet_probe.plugins import get_analysis
from resnet_probe.results import Result
from resnet_probe.runner import check_seed, execute
from resnet_probe.settings import BATCH_SIZE, GRADIENT_SAMPLES, LESION_SAMPLES, REORDER_SAMPLES, RunSettings
from resnet_probe.structure import Topology

__all__ = [
    "Plan", "load_model", "load_data", "topology", "run_plans", "run", "evaluate", "lesion", "reorder", "paths",
    "gradients", "response_std", "prune",
]

ModelLike = Union[LoadedModel, str, Path, nn.Module]
DataLike = Union[DataSource, str, Path, tuple[Tensor, Tensor], "torch.utils.data.Dataset[Any]", Any, None]
T = TypeVar("T")


class RunOptions(TypedDict, total=False):
    """What every analysis function takes besides its own options (see :func:`run`)."""

    compare: Sequence[ModelLike]
    units: Sequence[str] | None
    inputs: str | int | None
    targets: str | int | None
    batch_size: int
    seed: int
    device: str | None
    precision: str
    confidence: float
    tolerance: float | None
    title: str | None


def run(name: str, model: ModelLike, data: DataLike = None, **options: Any) -> Result:
    """Run the analysis called ``name`` (built-in or plugin) and return its result.

    ``options`` are the analysis' own and those of :class:`RunOptions`: ``compare`` (more models,
    same study), ``units`` (module names of the residual units, overriding discovery), ``inputs``/
    ``targets`` (the keys of dict batches), ``batch_size``, ``seed``, ``device`` (default: wherever
    the model's parameters are; the model is not moved), ``precision``, ``confidence``,
    ``tolerance``, ``title``.

    Example:
        >>> rp.run("lesion", "resnet56", "cifar10-sample", random_k="1:5", samples=10)
    """
    common = {k: options.pop(k) for k in list(options) if k in RunOptions.__annotations__}
    analysis = get_analysis(name)()
    data_source = _data(data, common.get("inputs"), common.get("targets")) if analysis.needs_data else None
    units = common.get("units")
    main = _model(model, data_source, units)
    others = [_model(m, data_source, None) for m in common.get("compare", ())]
    precision = common.get("precision", "fp32")
    confidence = common.get("confidence", 0.95)
    settings = RunSettings(
        str(main.spec), spec=main.spec, batch_size=common.get("batch_size", BATCH_SIZE),
        seed=check_seed(common.get("seed", 0)),
        precision=precision, title=common.get("title"), confidence=confidence, tolerance=common.get("tolerance"),
        device=common.get("device") or str(_device_of(main)),
    )
    executor = Executor(main.topology, settings.device, precision)
    return execute(
        analysis, main, executor, data_source, settings, options,
        compare=[(m, Executor(m.topology, settings.device, precision)) for m in others],
        compare_names=[str(m.spec) for m in others],
    )


def evaluate(
    model: ModelLike, data: DataLike = None, *, metric: MetricLike = "auto", **run_options: Unpack[RunOptions]
) -> EvaluateResult:
    """The metric (default top-1 accuracy) and cross-entropy of the unchanged model, with an interval."""
    return _typed(EvaluateResult, run("evaluate", model, data, metric=metric, **run_options))


def lesion(
    model: ModelLike,
    data: DataLike = None,
    *,
    delete: str | int | Sequence[int | str] | None = None,
    random_k: str | int | Sequence[int] | None = None,
    samples: int = LESION_SAMPLES,
    metric: MetricLike = "auto",
    **run_options: Unpack[RunOptions],
) -> LesionResult:
    """Delete residual units (each alone, the set ``delete``, ``samples`` random sets per k in ``random_k``).

    ``metric``: ``"top1"`` (default), ``"top5"``, ``"loss"`` or a callable ``(outputs, targets)`` giving
    one value per example (bools: hits; floats: losses, lower is better).

    Example:
        >>> rp.lesion(timm.create_model("resnet18"), (x, y), metric="loss")
    """
    result = run("lesion", model, data, delete=delete, random_k=random_k, samples=samples, metric=metric,
                 **run_options)
    return _typed(LesionResult, result)


def reorder(
    model: ModelLike,
    data: DataLike = None,
    *,
    swaps: str | int | Sequence[int] = "1:20",
    samples: int = REORDER_SAMPLES,
    **run_options: Unpack[RunOptions],
) -> ReorderResult:
    """Swap units (``swaps="1:20"``, ``samples`` orders per count) and score each order against Kendall tau."""
    return _typed(ReorderResult, run("reorder", model, data, swaps=swaps, samples=samples, **run_options))


def paths(model: ModelLike, *, graphml: str | Path | None = None, **run_options: Unpack[RunOptions]) -> PathsResult:
    """The unraveled view: paths by length, from the path graph (no data needed)."""
    return _typed(PathsResult, run("paths", model, None, graphml=graphml, **run_options))


def gradients(
    model: ModelLike,
    data: DataLike = None,
    *,
    samples: int = GRADIENT_SAMPLES,
    k: str | int | Sequence[int] | None = None,
    share: float = 0.9,
    **run_options: Unpack[RunOptions],
) -> GradientsResult:
    """Input-gradient norm carried by paths of each length, and the effective paths (Veit et al. Sec. 4.2)."""
    return _typed(GradientsResult, run("gradients", model, data, samples=samples, k=k, share=share, **run_options))


def response_std(model: ModelLike, data: DataLike = None, **run_options: Unpack[RunOptions]) -> ResponseStdResult:
    """Std of every 3x3 conv's response after BN (He et al. Fig. 7); ``compare=`` adds models."""
    return _typed(ResponseStdResult, run("response-std", model, data, **run_options))


def prune(
    model: ModelLike,
    data: DataLike = None,
    *,
    remove: int = 1,
    method: str = "greedy",
    calibration: float = 0.5,
    save: str | None = None,
    metric: MetricLike = "auto",
    **run_options: Unpack[RunOptions],
) -> PruneResult:
    """Remove ``remove`` units chosen on a ``calibration`` share of the data; the accuracy kept on the rest.

    ``method``: ``greedy`` (SLEB's search), ``lesion`` (cheapest single deletions) or ``last``. The units
    leave a copy's module tree (params, FLOPs and latency before and after); ``save`` writes it as a .pt2.

    Example:
        >>> rp.prune("resnet20", "cifar10-sample", remove=2, save="pruned.pt2")
    """
    result = run("prune", model, data, remove=remove, method=method, calibration=calibration, save=save,
                 metric=metric, **run_options)
    return _typed(PruneResult, result)


def topology(model: ModelLike, *, units: Sequence[str] | None = None) -> Topology:
    """The stem -> units -> head view of ``model`` (print it, or show it in a notebook).

    Example:
        >>> print(rp.topology(torchvision.models.resnet18()))
    """
    return _model(model, None, units).topology


def run_plans(
    model: ModelLike,
    x: Tensor,
    plans: Sequence[Plan],
    reduce: Callable[[Tensor], T] | None = None,
    *,
    units: Sequence[str] | None = None,
) -> list[Any]:
    """The outputs of many interventions on one batch, sharing the computation of common prefixes.

    ``plans`` are :class:`Plan` values (deleted units, unit order); ``reduce`` maps each plan's
    logits to what you keep (default: the logits themselves). Runs where ``x`` is; the model
    is not changed (a private copy runs when ``x`` lies on another device).

    Example:
        >>> base, without3 = rp.run_plans(model, x, [rp.Plan(), rp.Plan.delete(3)])
    """
    loaded = _model(model, None, units)
    executor = Executor(loaded.topology, x.device)
    return executor.run_plans(x, plans, reduce if reduce is not None else _same)


def _same(logits: Tensor) -> Tensor:
    return logits


R = TypeVar("R", bound=Result)


def _typed(kind: type[R], result: Result) -> R:
    if not isinstance(result, kind):  # a plugin registered under a built-in's name
        raise TypeError(f"expected a {kind.__name__}, got {type(result).__name__}")
    return result


def _model(model: ModelLike, data: DataSource | None, units: Sequence[str] | None) -> LoadedModel:
    """A LoadedModel for ``model``, checked on one small batch of ``data`` when there is data."""
    if isinstance(model, LoadedModel):
        loaded = model
        if units is not None:
            loaded = dataclasses.replace(loaded, topology=topology_from_units(loaded.model, list(units)))
    elif isinstance(model, nn.Module):
        loaded = from_module(model, units=units)
    elif _is_exported_program(model):
        loaded = from_module(getattr(model, "module")(), units=units, name="ExportedProgram")  # noqa: B009
    elif isinstance(model, (str, Path)):
        # data passed in may hold only some of the classes: it does not decide the model's
        named = data if data is not None and not isinstance(data, GivenSource) else None
        loaded = load_model(
            str(model), dataset=named.name if named is not None else None,
            num_classes=named.num_classes if named is not None and named.num_classes else None, units=units,
        )
    else:
        raise ModelError(
            f"cannot study a {type(model).__name__}; expected a model name or file, a LoadedModel, an nn.Module "
            "or a torch.export program"
        )
    if data is None:
        return loaded
    x, _ = next(iter(data.batches(2, loaded.preprocessing, _device_of(loaded))))
    classes = check_output(loaded, x[:2] if isinstance(x, Tensor) else x)
    if data.num_classes > classes:
        raise DataError(f"{data.name} has {data.num_classes} classes but {loaded.spec} predicts {classes}")
    return loaded if loaded.num_classes else dataclasses.replace(loaded, num_classes=classes)


def _is_exported_program(model: object) -> bool:
    export = getattr(torch, "export", None)
    program = getattr(export, "ExportedProgram", None)
    return program is not None and isinstance(model, program)


def _data(data: DataLike, inputs: str | int | None, targets: str | int | None) -> DataSource:
    if isinstance(data, DataSource):
        return data
    if isinstance(data, Path) or (isinstance(data, str) and ("/" in data or data.endswith(".npz"))):
        return load_data(data=data)
    if data is None or isinstance(data, str):
        return load_data(data)
    return given_source(data, inputs=inputs, targets=targets)


def _device_of(model: LoadedModel) -> Any:
    first = next(iter(model.model.parameters()), None)
    return first.device if first is not None else torch.device("cpu")
