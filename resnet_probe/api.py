"""The Python face, as short as the CLI: load a model and data, run an analysis, get its result.

Example:
    >>> import resnet_probe as rp
    >>> model = rp.load_model("resnet20")                 # the shipped akamaster weights
    >>> data = rp.load_data("cifar10-sample")             # 846 real CIFAR-10 test images
    >>> result = rp.lesion(model, data)
    >>> result.baseline.correct, result.to_frame().shape  # (776, (9, ...))
    >>> result.save("lesion-resnet20")                    # results.json, report.html, ...

Every function takes a :class:`LoadedModel` (or a model spec string) and a :class:`DataSource`
(or a data set name). Your model is never changed: it is not moved, copied or put in another
mode, and no hook outlives the call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from resnet_probe.data import DataSource, load_data
from resnet_probe.executor import Executor
from resnet_probe.models.load import load_model
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.plugins import get_analysis
from resnet_probe.results import Result
from resnet_probe.runner import check_seed, execute
from resnet_probe.settings import BATCH_SIZE, RunSettings

__all__ = [
    "load_model", "load_data", "run", "evaluate", "lesion", "reorder", "paths", "gradients", "response_std",
]


def run(
    name: str,
    model: LoadedModel | str,
    data: DataSource | str | Path | None = None,
    *,
    compare: Sequence[LoadedModel | str] = (),
    batch_size: int = BATCH_SIZE,
    seed: int = 0,
    device: str | None = None,
    precision: str = "fp32",
    confidence: float = 0.95,
    tolerance: float | None = None,
    title: str | None = None,
    **options: Any,
) -> Result:
    """Run the analysis called ``name`` (built-in or plugin) and return its result.

    ``device`` defaults to wherever the model's parameters are; the model is not moved.

    Example:
        >>> rp.run("lesion", "resnet56", "cifar10-sample", random_k="1:5", samples=10)
    """
    analysis = get_analysis(name)()
    data_source = _data(data) if analysis.needs_data else None
    main = _model(model, data_source)
    others = [_model(m, data_source) for m in compare]
    settings = RunSettings(
        str(main.spec), batch_size=batch_size, seed=check_seed(seed), precision=precision, title=title,
        confidence=confidence, tolerance=tolerance,
        device=device or str(_device_of(main)),
    )
    executor = Executor(main.topology, settings.device, precision)
    return execute(
        analysis, main, executor, data_source, settings, options,
        compare=[(m, Executor(m.topology, settings.device, precision)) for m in others],
        compare_names=[str(m.spec) for m in others],
    )


def evaluate(model: LoadedModel | str, data: DataSource | str | Path | None = None, **options: Any) -> Result:
    """Accuracy and loss of the unchanged model."""
    return run("evaluate", model, data, **options)


def lesion(model: LoadedModel | str, data: DataSource | str | Path | None = None, **options: Any) -> Result:
    """Delete residual units (each alone, ``delete=``, ``random_k=``) and score each configuration."""
    return run("lesion", model, data, **options)


def reorder(model: LoadedModel | str, data: DataSource | str | Path | None = None, **options: Any) -> Result:
    """Swap units (``swaps="1:20"``, ``samples=``) and score each order against Kendall tau."""
    return run("reorder", model, data, **options)


def paths(model: LoadedModel | str, **options: Any) -> Result:
    """The unraveled view: paths by length, from the path graph."""
    return run("paths", model, None, **options)


def gradients(model: LoadedModel | str, data: DataSource | str | Path | None = None, **options: Any) -> Result:
    """Input-gradient norm carried by paths of each length, and the effective paths."""
    return run("gradients", model, data, **options)


def response_std(model: LoadedModel | str, data: DataSource | str | Path | None = None, **options: Any) -> Result:
    """Std of every 3x3 conv's response after BN (He et al. Fig. 7); ``compare=`` adds models."""
    return run("response-std", model, data, **options)


def _model(model: LoadedModel | str, data: DataSource | None) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    return load_model(model, dataset=data.name if data is not None else None,
                      num_classes=data.num_classes if data is not None else None)


def _data(data: DataSource | str | Path | None) -> DataSource:
    if isinstance(data, DataSource):
        return data
    if isinstance(data, Path) or (isinstance(data, str) and ("/" in data or data.endswith(".npz"))):
        return load_data(data=data)
    return load_data(data)


def _device_of(model: LoadedModel) -> Any:
    first = next(iter(model.model.parameters()), None)
    return first.device if first is not None else "cpu"
