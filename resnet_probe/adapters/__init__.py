"""Adapters turn a family's module tree into a :class:`~resnet_probe.structure.Topology`.

Each adapter module exposes ``matches(model) -> bool`` and ``build(model) -> Topology``;
they are imported lazily so that timm is only imported for timm models.
"""

from __future__ import annotations

import dataclasses
import importlib

from torch import nn

from resnet_probe.errors import AdapterError
from resnet_probe.structure import Topology

# Order matters: the first adapter whose ``matches`` accepts the model builds it. Each hand-written
# adapter matches by module classes (the model's and its blocks'), never by name; a torch.export program
# ("exported": a GraphModule of aten ops) is read from its own graph; discovery by torch.fx ("fx") accepts
# any module, so it comes last: only a model every named adapter refused reaches it.
ADAPTERS: tuple[str, ...] = (
    "cifar", "identity_mappings", "densenet", "vovnet", "torchvision", "timm_resnet", "timm_resnetv2", "convnext",
    "vit", "hf_gpt2", "hf_llama", "exported", "fx",
)


def build_topology(model: nn.Module) -> Topology:
    """The topology of ``model`` from the first adapter that understands it."""
    for name in ADAPTERS:
        adapter = importlib.import_module(f"{__name__}.{name}")
        if adapter.matches(model):
            topology: Topology = adapter.build(model)
            return dataclasses.replace(topology, reader=build_topology)
    raise AdapterError(
        f"no adapter understands {type(model).__module__}.{type(model).__name__}; "
        f"supported families: {', '.join(ADAPTERS)}"
    )
