"""Adapter for VoVNets: the zoo's CIFAR VoVNets and timm's ``VovNet`` (vovnet39a, ese_vovnet19b_dw, ...).

An OSA module is a unit joined by concatenation and aggregated once:
``y = agg(cat([x, c_1, ..., c_L], 1))`` with ``c_i`` the chain of 3x3 convs (``c_i`` fed by
``c_{i-1}``) and ``agg`` the 1x1 conv (then eSE, then ``+ x`` where VoVNetV2 has its identity
residual). The shortcut is the module input in the concatenation, the residual branch the
chain's L outputs, ``post`` the aggregation. Its wiring is the chain itself, so its paths are
the chain's prefixes: L+1 of lengths 0..L (one more of length 0 with the identity residual).
This module never imports timm itself.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_probe.errors import AdapterError
from resnet_probe.models.zoo.families import VOVNET
from resnet_probe.models.zoo.vovnet import CifarVoVNet, OSAModule
from resnet_probe.structure import IN, OUT, Edge, Fn, Topology, Unit, identity

TIMM_FAMILY = "timm-vovnet"
_TIMM_MODULE = "timm.models.vovnet"

OSA_NOTE = (
    "OSA modules are units joined by concatenation and aggregated once: y = agg(cat([x, c1, ..., cL], 1)), c_i "
    "the chain of 3x3 convs, agg the 1x1 conv (then eSE, then + x where the module has VoVNetV2's identity "
    "residual). The shortcut is the module input inside the concatenation, the residual branch the chain's L "
    "outputs: deleting a module sets them to zero and keeps only its length-0 path, agg(cat([x, 0]))."
)
PATHS_NOTE = (
    "Paths: a module's chain gives L+1 paths of lengths 0..L (one more of length 0 where the identity residual "
    "skips the aggregation), so the path count is a product of these, not a binomial."
)
ROUTE_NOTE = (
    "Path gradients are undefined: a route takes each unit's shortcut or its residual branch, and an OSA "
    "module's branch holds paths of every length 1..L."
)
POOL_NOTE = "The max pools that open the later stages are transitions: one non-deletable edge on every path."
RESPONSE_NOTE = (
    "Responses: the BN output of each chain 3x3 conv, before its ReLU; the 1x1 aggregation conv is no 3x3 layer."
)
TIMM_RESPONSE_NOTE = (
    "timm's norm layers apply their ReLU in place: the responses are read from inside the norm layer, after the "
    "BN and before the ReLU, when the hook fires."
)
DEPTHWISE_NOTE = (
    "Depthwise-separable chains (3x3 depthwise + 1x1 pointwise per layer, a 1x1 reduction before the chain where "
    "widths differ): each separable conv is one layer of the chain; the reduction is a length-0 edge."
)
DROP_NOTE = "DropPath is part of the aggregation, before the identity residual (the identity in eval mode)."


def osa_wiring(layers: int, identity_residual: bool, reduction: bool = False) -> tuple[Edge, ...]:
    """An OSA module's path graph: the chain, every output into the concatenation, the aggregation.

    Nodes ``layer1..layerL`` are the chain outputs, ``concat`` the concatenation; ``reduced``
    the 1x1 reduction's output where one feeds the chain (timm's depthwise modules).
    """
    start = "reduced" if reduction else IN
    edges = [Edge(IN, "reduced", "reduction", "reduction", 0)] if reduction else []
    edges.append(Edge(IN, "concat", "shortcut", "identity", 0))
    for i in range(1, layers + 1):
        edges.append(Edge(start if i == 1 else f"layer{i - 1}", f"layer{i}", f"chain.{i}", "chain", 1))
        edges.append(Edge(f"layer{i}", "concat", f"concat.{i}", "concat", 0))
    edges.append(Edge("concat", OUT, "aggregation", "aggregation", 0))
    if identity_residual:
        edges.append(Edge(IN, OUT, "identity", "identity", 0))
    return tuple(edges)


def matches(model: nn.Module) -> bool:
    """Whether ``model`` is a zoo CIFAR VoVNet or a timm ``VovNet``; never imports timm."""
    if isinstance(model, CifarVoVNet):
        return True
    vovnet = sys.modules.get(_TIMM_MODULE)
    return vovnet is not None and isinstance(model, vovnet.VovNet)


def build(model: nn.Module) -> Topology:
    """The topology of a VoVNet: stem, OSA modules (max pools as transitions), head."""
    if isinstance(model, CifarVoVNet):
        return _build_zoo(model)
    vovnet = sys.modules.get(_TIMM_MODULE)
    if vovnet is not None and isinstance(model, vovnet.VovNet):
        return _build_timm(model, vovnet)
    raise AdapterError(f"not a VoVNet: {type(model).__name__}")


def _osa_unit(
    index: int,
    name: str,
    stage: int,
    module: nn.Module,
    *,
    in_channels: int,
    out_channels: int,
    chain: Fn,
    layers: int,
    layer_channels: int,
    aggregate: Fn,
    identity_residual: bool,
    reduction: bool,
    responses: tuple[tuple[str, nn.Module], ...],
) -> Unit:
    """An OSA module as a concatenating unit; ``aggregate`` maps the concatenation to the output."""

    def post(z: Tensor) -> Tensor:
        y = aggregate(z)
        return y + z[:, :in_channels] if identity_residual else y

    return Unit(
        index=index,
        name=name,
        stage=stage,
        in_channels=in_channels,
        out_channels=out_channels,
        stride=1,
        downsampling=in_channels != out_channels,
        shortcut_kind="identity",
        shortcut=identity,
        residual=chain,
        post=post,
        module=module,
        responses=responses,
        join="concat",
        residual_channels=layers * layer_channels,
        wiring=osa_wiring(layers, identity_residual, reduction),
    )


def _build_zoo(model: CifarVoVNet) -> Topology:
    units: list[Unit] = []
    transitions: dict[int, Fn] = {}
    for s, (down, stage) in enumerate(zip(model.downsamples, model.stages, strict=True)):
        if not isinstance(down, nn.Identity):
            transitions[len(units)] = down
        for j, module in enumerate(stage.children()):
            if not isinstance(module, OSAModule):
                raise AdapterError(f"stages.{s}.{j} is a {type(module).__name__}, expected an OSAModule")
            name = f"stages.{s}.{j}"
            units.append(_osa_unit(
                len(units), name, s + 1, module,
                in_channels=module.in_channels, out_channels=module.out_channels,
                chain=_zoo_chain(module), layers=module.num_layers, layer_channels=module.stage_channels,
                aggregate=_zoo_aggregate(module), identity_residual=module.identity, reduction=False,
                responses=tuple((f"{name}.layers.{i}.1", bn) for i, bn in enumerate(module.response_bns)),
            ))

    def head(x: Tensor) -> Tensor:
        return model.classifier(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    return Topology(
        VOVNET, model.stem, tuple(units), head, model, transitions=transitions,
        notes=(OSA_NOTE, PATHS_NOTE, ROUTE_NOTE, POOL_NOTE, RESPONSE_NOTE),
        stem_responses=(("stem.1", model.stem[1]),),
    )


def _zoo_chain(module: OSAModule) -> Fn:
    def chain(x: Tensor) -> Tensor:
        return torch.cat(module.chain(x), 1)

    return chain


def _zoo_aggregate(module: OSAModule) -> Fn:
    def aggregate(z: Tensor) -> Tensor:
        y = module.concat(z)
        return module.ese(y) if module.ese is not None else y

    return aggregate


def _build_timm(model: Any, vovnet: Any) -> Topology:
    """timm: ``stem``, ``stages[i].pool`` (a transition) and ``stages[i].blocks``, ``forward_head``."""
    units: list[Unit] = []
    transitions: dict[int, Fn] = {}
    for s, stage in enumerate(model.stages):
        if stage.pool is not None:
            transitions[len(units)] = stage.pool
        for j, block in enumerate(stage.blocks):
            name = f"stages.{s}.blocks.{j}"
            # Exact type: a subclass may override forward, which these callables re-trace.
            if type(block) is not vovnet.OsaBlock:
                raise AdapterError(f"{name} is a {type(block).__name__}; the VoVNet adapter understands OsaBlock only")
            units.append(_timm_unit(len(units), name, s + 1, block))
    if not units:
        raise AdapterError("this timm VovNet has no OSA modules (pruned?)")
    blocks = [u.module for u in units]
    notes = [OSA_NOTE, PATHS_NOTE, ROUTE_NOTE, POOL_NOTE, RESPONSE_NOTE, TIMM_RESPONSE_NOTE]
    if any(b.depthwise for b in blocks):
        notes.append(DEPTHWISE_NOTE)
    if any(b.drop_path is not None for b in blocks):
        notes.append(DROP_NOTE)
    stem = tuple((f"stem.{i}.bn", _norm_response(m)) for i, m in enumerate(model.stem) if _is_3x3(m))
    return Topology(
        TIMM_FAMILY, model.stem, tuple(units), model.forward_head, model, transitions=transitions,
        notes=tuple(notes), stem_responses=stem,
    )


def _timm_unit(index: int, name: str, stage: int, block: Any) -> Unit:
    """timm's ``OsaBlock.forward``: [reduction], chain, concat conv, attn, drop_path, + x."""
    mids: list[Any] = list(block.conv_mid)
    reduction = block.conv_reduction

    def chain(x: Tensor) -> Tensor:
        h = x if reduction is None else reduction(x)
        outputs = []
        for m in mids:
            h = m(h)
            outputs.append(h)
        return torch.cat(outputs, 1)

    def aggregate(z: Tensor) -> Tensor:
        y = block.conv_concat(z)
        if block.attn is not None:
            y = block.attn(y)
        if block.drop_path is not None:
            y = block.drop_path(y)
        return y

    first = reduction if reduction is not None else mids[0]
    return _osa_unit(
        index, name, stage, block,
        in_channels=int(first.in_channels), out_channels=int(block.conv_concat.out_channels),
        chain=chain, layers=len(mids), layer_channels=int(mids[0].out_channels),
        aggregate=aggregate, identity_residual=bool(block.residual), reduction=reduction is not None,
        responses=tuple((f"{name}.conv_mid.{i}.bn", _norm_response(m)) for i, m in enumerate(mids)),
    )


def _is_3x3(m: nn.Module) -> bool:
    """A conv-norm-act layer whose (first) conv is 3x3."""
    conv = getattr(m, "conv", None)
    if conv is None:
        conv = getattr(m, "conv_dw", None)
    return isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3)


def _norm_response(m: nn.Module) -> nn.Module:
    """The module whose output is the BN output before the act: a norm-act layer's ``drop``, else its norm."""
    norm: nn.Module = m.bn  # type: ignore[assignment]
    drop = getattr(norm, "drop", None)
    return drop if isinstance(drop, nn.Module) else norm
