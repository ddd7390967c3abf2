"""``load_model``: a spec plus weights (checkpoint, cache, published, random) -> LoadedModel."""

from __future__ import annotations

import urllib.error
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import nn

from resnet_probe.adapters import build_topology
from resnet_probe.data.preprocessing import Preprocessing
from resnet_probe.errors import CheckpointError, OfflineError, ProbeError, UnknownModelError
from resnet_probe.models import cache
from resnet_probe.models.checkpoints import (
    CheckpointData,
    apply_state_dict,
    check_weights,
    read_checkpoint,
    tensors_sha256,
)
from resnet_probe.models.loaded import LoadedModel
from resnet_probe.models.module import from_module, topology_from_units
from resnet_probe.models.registry import get_entry
from resnet_probe.models.spec import ModelSpec, parse
from resnet_probe.models.weights import PublishedWeights, identify, published

WEIGHTS: tuple[str, ...] = ("auto", "random", "pretrained")


def load_model(
    spec: ModelSpec | str,
    *,
    checkpoint: str | Path | None = None,
    weights: str = "auto",
    dataset: str | None = None,
    num_classes: int | None = None,
    units: Sequence[str] | None = None,
) -> LoadedModel:
    """Build a model, give it weights, put it in eval mode and read its topology.

    ``weights="auto"``: a zoo model takes ``checkpoint``, else the checkpoint ``train`` left in
    the cache, else akamaster's published CIFAR-10 weights; a tv/timm model takes
    ``checkpoint``, else stays randomly initialised (offline). ``"random"`` keeps the random
    init (torch's global RNG), ``"pretrained"`` asks for published weights. ``net.pt2`` is a
    ``torch.export`` program (its own weights); ``file.py:factory`` runs your code and takes
    ``checkpoint``. ``units`` (module names, in order) overrides the adapters' unit view.

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
    resolver = RESOLVERS.get(spec.source)
    if resolver is None:
        raise UnknownModelError(f"no loader for model source {spec.source!r}; known: {', '.join(RESOLVERS)}")
    loaded = resolver(spec, checkpoint, weights, dataset, num_classes)
    if units is not None:
        loaded = replace(loaded, topology=topology_from_units(loaded.model, list(units)))
    return loaded


def _load_export(
    spec: ModelSpec, checkpoint: str | Path | None, weights: str, dataset: str | None, num_classes: int | None
) -> LoadedModel:
    from resnet_probe.models.exported import exported_info, read_exported

    if checkpoint is not None or weights != "auto":
        raise ProbeError(f"{spec.name} is a torch.export program: it carries its own weights (no checkpoint, "
                         "--random-init or --pretrained)")
    path = Path(spec.name).expanduser()
    module = read_exported(path)
    info = exported_info(module)
    meta: dict[str, Any] = {"weights": "export program", "checkpoint_format": "torch.export"}
    if info is not None:
        meta["export"] = info.to_dict()
    loaded = from_module(module, spec=spec, metadata=meta)
    classes = (info.num_outputs if info is not None else None) or num_classes or 0
    return replace(loaded, checkpoint=str(path), checkpoint_sha256=info.sha256 if info is not None else None,
                   num_classes=classes)


def _load_python(
    spec: ModelSpec, checkpoint: str | Path | None, weights: str, dataset: str | None, num_classes: int | None
) -> LoadedModel:
    from resnet_probe.models.factory import build_from_factory

    if weights == "pretrained":
        raise ProbeError(f"{spec.name}: --pretrained is for tv: and timm: models; pass --checkpoint PATH")
    if checkpoint is None:
        model = build_from_factory(spec.name).eval()
        label = "random" if weights == "random" else "as built by the factory"
        return replace(from_module(model, spec=spec, metadata={"weights": label}), num_classes=num_classes or 0)

    def build(_classes: int | None, _pretrained: bool) -> tuple[nn.Module, Preprocessing | None]:
        return build_from_factory(spec.name), None

    loaded = _from_checkpoint(spec, Path(checkpoint), "checkpoint", num_classes, build)
    return replace(loaded, num_classes=num_classes or 0)


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
    pub = published(spec.name, data_set)
    if pub is not None and num_classes in (None, 10):
        return _from_published(spec, pub)
    what = "published" if weights == "pretrained" else "trained or published"
    raise CheckpointError(
        f"no {what} weights for {spec} on {data_set}; train one with "
        f"`resnet-probe train --model {spec.name} --dataset {data_set}`, pass --checkpoint PATH, "
        f"or use --random-init"
    )


def _load_hub(
    spec: ModelSpec, checkpoint: str | Path | None, weights: str, dataset: str | None, num_classes: int | None
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
    sha256: str | None = None,
    preprocessing: Preprocessing | None = None,
) -> LoadedModel:
    """Weights from a file, with the preprocessing that belongs to them, whatever the file's format.

    In order: ``preprocessing`` (the published-weights table, for a published file), the table's
    entry when the file holds published weights (recognised by the digest of the file or of its
    tensors: a safetensors copy of akamaster's file is still akamaster's weights), what the file
    records or its format implies, the builder's (tv/timm); else the data set's.
    """
    data = read_checkpoint(path)
    if sha256 is not None and data.sha256 != sha256:
        raise CheckpointError(f"weights {path} are damaged (sha256 {data.sha256[:12]}…, not {sha256[:12]}…)")
    _check_spec(spec, path, data)
    saved = data.metadata.get("num_classes") if data.format == "resnet-probe" else None
    if saved is not None and num_classes is not None and int(saved) != num_classes:
        raise CheckpointError(
            f"checkpoint {path.name} has {saved} classes, but num_classes={num_classes} was asked for"
        )
    n = int(saved) if saved is not None else num_classes
    model, builder_prep = builder(n, False)
    apply_state_dict(model, data.state_dict, f"checkpoint {path.name} does not fit {spec}")
    check_weights(model, data.state_dict, f"checkpoint {path.name}")
    meta = {**data.metadata, **(extra or {}), "weights": label, "checkpoint_format": data.format}
    known = None
    if preprocessing is None and spec.source == "zoo":
        known = identify(spec.name, data.sha256, lambda: tensors_sha256(data.state_dict))
    if known is not None:
        meta["published_weights"] = f"{known.source} {known.file_name}"
    prep = preprocessing or (known.preprocessing if known is not None else None) or data.preprocessing or builder_prep
    return _finish(model, spec, n or _default_classes(spec), prep, meta, path, data.sha256)


def _from_published(spec: ModelSpec, pub: PublishedWeights) -> LoadedModel:
    """Published weights: the shipped file, else torch.hub's hash-checked download into the cache."""
    extra = {"url": pub.url, "source": pub.source, "licence": pub.licence}
    if pub.path is not None:
        return _from_checkpoint(
            spec, pub.path, pub.label, 10, _zoo_builder(spec), extra, pub.sha256, pub.preprocessing
        )
    import torch.hub

    hub_dir = cache.home() / "hub"
    try:
        torch.hub.load_state_dict_from_url(
            pub.url,
            model_dir=str(hub_dir),
            check_hash=True,
            map_location="cpu",
            weights_only=True,
            file_name=pub.file_name,
            progress=False,
        )
    except (urllib.error.URLError, OSError) as exc:  # HTTPError and socket errors are OSErrors too
        reason = getattr(exc, "reason", None) or exc
        raise OfflineError(
            f"cannot download {pub.label}'s {spec.name} weights (offline? {' '.join(str(reason).split())}); "
            f"pass --checkpoint PATH, train one with `resnet-probe train --model {spec.name} "
            f"--dataset {pub.dataset}`, or use --random-init"
        ) from None
    except RuntimeError as exc:  # torch.hub's hash check, or a corrupt file already in the cache
        raise CheckpointError(
            f"{pub.label}'s {spec.name} weights are unusable ({' '.join(str(exc).split())}); "
            f"delete {hub_dir / pub.file_name} and retry"
        ) from None
    return _from_checkpoint(
        spec, hub_dir / pub.file_name, pub.label, 10, _zoo_builder(spec), extra, preprocessing=pub.preprocessing
    )


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


def _hub_builder(spec: ModelSpec, *, with_tag: bool = True) -> Any:
    from resnet_probe.models import hub

    def build(num_classes: int | None, pretrained: bool) -> tuple[nn.Module, Preprocessing | None]:
        if spec.source == "tv":
            tag = spec.tag if with_tag else None
            return hub.build_torchvision(spec.name, pretrained, num_classes=num_classes, tag=tag)
        return hub.build_timm(spec.name, spec.tag, pretrained, num_classes=num_classes)

    return build


def _load_hf(
    spec: ModelSpec, checkpoint: str | Path | None, weights: str, dataset: str | None, num_classes: int | None
) -> LoadedModel:
    """A causal LM from a ``save_pretrained`` directory or the local Hugging Face cache, never downloaded."""
    if checkpoint is not None or weights == "pretrained":
        raise ProbeError(f"hf:{spec.name} carries its own weights: no --checkpoint or --pretrained")
    try:
        import transformers
    except ImportError:
        raise ProbeError("hf: models need transformers: pip install 'resnet-probe[hf]'") from None
    try:
        config = transformers.AutoConfig.from_pretrained(spec.name, local_files_only=True)
        if weights == "random":
            model = transformers.AutoModelForCausalLM.from_config(config)
        else:
            model = transformers.AutoModelForCausalLM.from_pretrained(spec.name, local_files_only=True)
    except (OSError, ValueError) as exc:  # not there offline, or not a causal LM
        reason = " ".join(str(exc).split())[:200]
        raise OfflineError(
            f"cannot load hf:{spec.name} from a local directory or the local Hugging Face cache ({reason})"
        ) from None
    meta = {"weights": "random" if weights == "random" else "hugging face", "hf_path": spec.name,
            "architecture": type(model).__name__}
    loaded = from_module(model.eval(), spec=spec, metadata=meta)
    return replace(loaded, num_classes=int(config.vocab_size))


RESOLVERS: dict[str, Callable[..., LoadedModel]] = {
    "zoo": _load_zoo, "tv": _load_hub, "timm": _load_hub, "export": _load_export, "python": _load_python,
    "hf": _load_hf,
}


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
