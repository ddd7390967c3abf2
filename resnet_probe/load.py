"""``load_model``: a spec plus weights (checkpoint, cache, published, random) -> LoadedModel."""

from __future__ import annotations

import urllib.error
from pathlib import Path
from typing import Any

from torch import nn

from . import cache
from .adapters import build_topology
from .checkpoints import CheckpointData, apply_state_dict, read_checkpoint
from .errors import CheckpointError, OfflineError, ProbeError, UnknownModelError
from .loaded import IMAGENET_MEAN, IMAGENET_STD, LoadedModel, Preprocessing
from .registry import get_entry
from .spec import ModelSpec, parse

WEIGHTS: tuple[str, ...] = ("auto", "random", "pretrained")

AKAMASTER_URL = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/{}"
# Option-A CIFAR-10 ResNets published by akamaster; the hash prefix in the name is what
# torch.hub's check_hash verifies.
AKAMASTER_FILES: dict[str, str] = {
    "resnet20": "resnet20-12fca82f.th",
    "resnet32": "resnet32-d509ac18.th",
    "resnet44": "resnet44-014dd654.th",
    "resnet56": "resnet56-4bfd9763.th",
    "resnet110": "resnet110-1d1ed7c2.th",
    "resnet1202": "resnet1202-f3b1deed.th",
}


def load_model(
    spec: ModelSpec | str,
    *,
    checkpoint: str | Path | None = None,
    weights: str = "auto",
    dataset: str | None = None,
    num_classes: int | None = None,
) -> LoadedModel:
    """Build a model, give it weights, put it in eval mode and read its topology.

    ``weights="auto"``: a zoo model takes ``checkpoint``, else the checkpoint ``train`` left in
    the cache, else akamaster's published CIFAR-10 weights; a tv/timm model takes
    ``checkpoint``, else stays randomly initialised (offline). ``"random"`` keeps the random
    init (torch's global RNG), ``"pretrained"`` asks for published weights.

    Example:
        >>> lm = load_model("zoo:resnet20", weights="random")
        >>> lm.topology.n_units
        9
    """
    spec = parse(spec) if isinstance(spec, str) else spec
    if weights not in WEIGHTS:
        raise ProbeError(f"unknown weights {weights!r}; choose one of {', '.join(WEIGHTS)}")
    if checkpoint is not None and weights != "auto":
        raise ProbeError(f"a checkpoint and weights={weights!r} exclude each other; pass only one")
    if spec.source == "zoo":
        return _load_zoo(spec, checkpoint, weights, dataset, num_classes)
    if spec.source in ("tv", "timm"):
        return _load_hub(spec, checkpoint, weights, num_classes)
    raise UnknownModelError(f"no loader for model source {spec.source!r}")


def _load_zoo(
    spec: ModelSpec, checkpoint: str | Path | None, weights: str, dataset: str | None, num_classes: int | None
) -> LoadedModel:
    entry = get_entry(spec.name)
    if checkpoint is not None:
        return _from_checkpoint(spec, Path(checkpoint), "checkpoint", num_classes, _zoo_builder(spec))
    if weights == "random":
        model = entry.builder(num_classes=num_classes or 10)
        return _finish(model, spec, num_classes or 10, None, {"weights": "random"})
    data_set = dataset or entry.default_dataset
    if weights == "auto":
        cached = cache.find_trained(spec, data_set)
        if cached is not None:
            return _from_checkpoint(spec, cached, "cache", num_classes, _zoo_builder(spec))
    if spec.name in AKAMASTER_FILES and data_set == "cifar10" and num_classes in (None, 10):
        return _from_akamaster(spec)
    what = "published" if weights == "pretrained" else "trained or published"
    raise CheckpointError(
        f"no {what} weights for {spec} on {data_set}; train one with "
        f"`resnet-probe train --model {spec.name} --dataset {data_set}`, pass --checkpoint PATH, "
        f"or use --random-init"
    )


def _load_hub(
    spec: ModelSpec, checkpoint: str | Path | None, weights: str, num_classes: int | None
) -> LoadedModel:
    if checkpoint is not None:
        # A torchvision tag names published weights; a checkpoint replaces them.
        builder = _hub_builder(spec, with_tag=False)
        return _from_checkpoint(spec, Path(checkpoint), "checkpoint", num_classes, builder)
    pretrained = weights == "pretrained"
    model, prep = _hub_builder(spec)(num_classes, pretrained)
    label = "pretrained" if pretrained else "random"
    return _finish(model, spec, num_classes or _default_classes(spec), prep, {"weights": label})


def _from_checkpoint(
    spec: ModelSpec,
    path: Path,
    label: str,
    num_classes: int | None,
    builder: Any,
    extra: dict[str, Any] | None = None,
) -> LoadedModel:
    data = read_checkpoint(path)
    _check_spec(spec, path, data)
    saved = data.metadata.get("num_classes") if data.format == "resnet-probe" else None
    if saved is not None and num_classes is not None and int(saved) != num_classes:
        raise CheckpointError(
            f"checkpoint {path.name} has {saved} classes, but num_classes={num_classes} was asked for"
        )
    n = int(saved) if saved is not None else num_classes
    model, builder_prep = builder(n, False)
    apply_state_dict(model, data.state_dict, f"checkpoint {path.name} does not fit {spec}")
    meta = {**data.metadata, **(extra or {}), "weights": label, "checkpoint_format": data.format}
    prep = data.preprocessing or builder_prep
    return _finish(model, spec, n or _default_classes(spec), prep, meta, path, data.sha256)


def _from_akamaster(spec: ModelSpec) -> LoadedModel:
    import torch.hub

    file_name = AKAMASTER_FILES[spec.name]
    url = AKAMASTER_URL.format(file_name)
    hub_dir = cache.home() / "hub"
    try:
        torch.hub.load_state_dict_from_url(
            url,
            model_dir=str(hub_dir),
            check_hash=True,
            map_location="cpu",
            weights_only=True,
            file_name=file_name,
            progress=False,
        )
    except (urllib.error.URLError, OSError) as exc:  # HTTPError and socket errors are OSErrors too
        reason = getattr(exc, "reason", None) or exc
        raise OfflineError(
            f"cannot download akamaster's {spec.name} weights (offline? {' '.join(str(reason).split())}); "
            f"pass --checkpoint PATH, train one with `resnet-probe train --model {spec.name} "
            f"--dataset cifar10`, or use --random-init"
        ) from None
    except RuntimeError as exc:  # torch.hub's hash check, or a corrupt file already in the cache
        raise CheckpointError(
            f"akamaster's {spec.name} weights are unusable ({' '.join(str(exc).split())}); "
            f"delete {hub_dir / file_name} and retry"
        ) from None
    extra = {"url": url, "source": "akamaster/pytorch_resnet_cifar10"}
    return _from_checkpoint(spec, hub_dir / file_name, "akamaster", 10, _akamaster_builder(spec), extra)


def _check_spec(spec: ModelSpec, path: Path, data: CheckpointData) -> None:
    saved = data.metadata.get("spec") if data.format == "resnet-probe" else None
    if saved is None:
        return
    try:
        same = parse(str(saved)) == spec
    except ProbeError:
        same = str(saved) == str(spec)
    if not same:
        raise CheckpointError(f"checkpoint {path.name} was saved for {saved}, not for {spec}")


def _zoo_builder(spec: ModelSpec) -> Any:
    entry = get_entry(spec.name)

    def build(num_classes: int | None, pretrained: bool) -> tuple[nn.Module, Preprocessing | None]:
        return entry.builder(num_classes=num_classes or 10), None

    return build


def _akamaster_builder(spec: ModelSpec) -> Any:
    zoo = _zoo_builder(spec)

    def build(num_classes: int | None, pretrained: bool) -> tuple[nn.Module, Preprocessing | None]:
        # akamaster normalises CIFAR input with ImageNet statistics, whatever the file says.
        return zoo(num_classes, pretrained)[0], Preprocessing(IMAGENET_MEAN, IMAGENET_STD, None, "checkpoint")

    return build


def _hub_builder(spec: ModelSpec, *, with_tag: bool = True) -> Any:
    from . import hub_models

    def build(num_classes: int | None, pretrained: bool) -> tuple[nn.Module, Preprocessing | None]:
        if spec.source == "tv":
            tag = spec.tag if with_tag else None
            return hub_models.build_torchvision(spec.name, pretrained, num_classes=num_classes, tag=tag)
        return hub_models.build_timm(spec.name, spec.tag, pretrained, num_classes=num_classes)

    return build


def _default_classes(spec: ModelSpec) -> int:
    return 10 if spec.source == "zoo" else 1000


def _finish(
    model: nn.Module,
    spec: ModelSpec,
    num_classes: int,
    prep: Preprocessing | None,
    meta: dict[str, Any],
    path: Path | None = None,
    sha: str | None = None,
) -> LoadedModel:
    model.eval()
    return LoadedModel(
        model=model,
        spec=spec,
        topology=build_topology(model),
        num_classes=num_classes,
        preprocessing=prep,
        checkpoint=str(path) if path is not None else None,
        checkpoint_sha256=sha,
        metadata=meta,
    )
