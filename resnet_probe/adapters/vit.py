"""Adapter for timm's ``timm.models.vision_transformer.VisionTransformer`` (vit_*, hybrids too).

Each transformer block holds two residual units, attention then MLP:
``x = x + drop_path1(ls1(attn(norm1(x))))`` and ``x = x + drop_path2(ls2(mlp(norm2(x))))``
(pre-norm ``Block``), or ``x + drop_path(norm(f(x)))`` for the post-norm ``ResPostBlock``.
Shortcuts are identities and nothing follows the addition. The stem is timm's
``forward_features`` up to the blocks (patch embedding, class/register tokens, position
embedding, patch dropout, norm_pre); the head is the final norm and ``forward_head``. This
module never imports timm itself.
"""

from __future__ import annotations

import sys
from typing import Any

from torch import Tensor, nn

from resnet_probe.errors import AdapterError
from resnet_probe.structure import Fn, Topology, Unit, token_unit

FAMILY = "vit"
_MODULE = "timm.models.vision_transformer"

TWO_UNITS_NOTE = (
    "Every transformer block is two residual units, blocks.i.attn then blocks.i.mlp, each y = x + residual(x) "
    "with an identity shortcut; a model of d blocks has 2d units, all of one shape and one stage."
)
PRENORM_NOTE = (
    "Pre-norm units: the LayerNorm is inside the residual branch (norm1 before attention, norm2 before the MLP) "
    "and nothing follows the addition, so deleting a unit is the identity."
)
POSTNORM_NOTE = "Post-norm units (ResPostBlock): the norm follows attention / the MLP inside the residual branch."
LAYER_SCALE_NOTE = (
    "Layer scale (ls1, ls2: a learned per-channel gamma) multiplies the residual branch and is part of it."
)
RESPONSE_NOTE = (
    "The responses are the residual branch outputs right before the addition: the outputs of ls1 / ls2 "
    "(identity modules where the model has no layer scale), (batch, tokens, dim) tensors."
)
RESPONSE_POST_NOTE = (
    "The responses are the residual branch outputs right before the addition: the outputs of norm1 / norm2, "
    "(batch, tokens, dim) tensors."
)
STEM_NOTE = (
    "The stem holds the patch embedding, the class / register tokens, the position embedding, patch dropout "
    "and norm_pre; the head holds the final norm, the token pooling and the classifier."
)
CLASS_TOKEN_NOTE = (
    "The head reads the class token: the path through no residual branch never touches a patch, so its "
    "input gradient is zero; every other path must pass an attention unit to carry image information."
)
HYBRID_NOTE = "Hybrid model: the CNN backbone of the patch embedding belongs to the stem and is not unraveled."
DROP_NOTE = "DropPath is part of the residual branch (identity in eval mode)."


def matches(model: nn.Module) -> bool:
    """Whether ``model`` is a timm ``VisionTransformer`` (not a subclass) of sequential blocks; never imports timm."""
    vit = sys.modules.get(_MODULE)
    # Exact type: subclasses (deit's distilled ViT, ...) override forward_features and head.
    if vit is None or type(model) is not vit.VisionTransformer:
        return False
    # Parallel blocks and other block classes go to discovery.
    blocks: Any = model.blocks
    return all(type(b) in (vit.Block, vit.ResPostBlock) for b in blocks)


def build(module: nn.Module) -> Topology:
    """The topology of a timm ``VisionTransformer``: two units per block."""
    vit = sys.modules.get(_MODULE)
    if vit is None or type(module) is not vit.VisionTransformer:
        raise AdapterError(f"not a timm VisionTransformer: {type(module).__name__}")
    model: Any = module
    units: list[Unit] = []
    for i, block in enumerate(model.blocks):
        if type(block) is vit.Block:
            attn, mlp = _prenorm_branches(block)
            responses = ((f"blocks.{i}.ls1", block.ls1), (f"blocks.{i}.ls2", block.ls2))
        elif type(block) is vit.ResPostBlock:
            attn, mlp = _postnorm_branches(block)
            responses = ((f"blocks.{i}.norm1", block.norm1), (f"blocks.{i}.norm2", block.norm2))
        else:
            raise AdapterError(
                f"blocks.{i} is a {type(block).__name__}; the ViT adapter understands Block and ResPostBlock "
                "only (parallel blocks are not a chain of residual units)"
            )
        for part, residual, response in (("attn", attn, responses[0]), ("mlp", mlp, responses[1])):
            name = f"blocks.{i}.{part}"
            units.append(token_unit(len(units), name, int(model.embed_dim), block, residual, (response,)))
    if not units:
        raise AdapterError("this timm VisionTransformer has no blocks")

    def stem(x: Tensor) -> Tensor:
        x = model.patch_embed(x)
        x = model._pos_embed(x)
        x = model.patch_drop(x)
        return model.norm_pre(x)

    def head(x: Tensor) -> Tensor:
        return model.forward_head(model.norm(x))

    return Topology(FAMILY, stem, tuple(units), head, model, notes=_notes(model))


def _prenorm_branches(block: Any) -> tuple[Fn, Fn]:
    """timm ``Block``: ``drop_path1(ls1(attn(norm1(x))))`` and ``drop_path2(ls2(mlp(norm2(x))))``."""

    def attn(x: Tensor) -> Tensor:
        return block.drop_path1(block.ls1(block.attn(block.norm1(x))))

    def mlp(x: Tensor) -> Tensor:
        return block.drop_path2(block.ls2(block.mlp(block.norm2(x))))

    return attn, mlp


def _postnorm_branches(block: Any) -> tuple[Fn, Fn]:
    """timm ``ResPostBlock``: ``drop_path1(norm1(attn(x)))`` and ``drop_path2(norm2(mlp(x)))``."""

    def attn(x: Tensor) -> Tensor:
        return block.drop_path1(block.norm1(block.attn(x)))

    def mlp(x: Tensor) -> Tensor:
        return block.drop_path2(block.norm2(block.mlp(x)))

    return attn, mlp


def _notes(model: Any) -> tuple[str, ...]:
    """One sentence per family specific that this model has."""
    vit = sys.modules[_MODULE]
    blocks: list[Any] = list(model.blocks)
    pre = [b for b in blocks if type(b) is vit.Block]
    notes = [TWO_UNITS_NOTE]
    if pre:
        notes.append(PRENORM_NOTE)
    if len(pre) < len(blocks):
        notes.append(POSTNORM_NOTE)
    if any(not isinstance(b.ls1, nn.Identity) or not isinstance(b.ls2, nn.Identity) for b in pre):
        notes.append(LAYER_SCALE_NOTE)
    notes.append(RESPONSE_NOTE if pre else RESPONSE_POST_NOTE)
    notes.append(STEM_NOTE)
    if model.global_pool == "token" and model.cls_token is not None and model.attn_pool is None:
        notes.append(CLASS_TOKEN_NOTE)
    if type(model.patch_embed).__name__ == "HybridEmbed":
        notes.append(HYBRID_NOTE)
    if any(not isinstance(b.drop_path1, nn.Identity) or not isinstance(b.drop_path2, nn.Identity) for b in blocks):
        notes.append(DROP_NOTE)
    return tuple(notes)
