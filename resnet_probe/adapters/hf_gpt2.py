"""Adapter for Hugging Face GPT-2 causal LMs (``transformers.GPT2LMHeadModel``).

Each ``GPT2Block`` is two pre-norm residual units, attention then MLP, as its own forward runs them::

    r = r + attn(ln_1(r), attention_mask)        # transformer.h.i.attn
    r = r + mlp(ln_2(r))                         # transformer.h.i.mlp

The stem is the token embedding plus the learned absolute position embedding of positions 0..seq-1
(``wte(ids) + wpe(pos)``, then the embedding dropout); the head is ``ln_f`` then ``lm_head`` (logits
(batch, seq, vocab)). The causal mask is computed inside each attention unit, per call, from the
stream's shape. Every unit has the stream's shape, so all are stage 1: the reorder analysis swaps
units within a stage, and a block-per-stage split would forbid every swap but attention <-> MLP of
one block. Matched by the exact classes ``GPT2LMHeadModel`` and ``GPT2Block``; never imports
transformers itself.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from resnet_probe.adapters import hf_common as hf
from resnet_probe.errors import AdapterError
from resnet_probe.structure import Fn, Topology, Unit, token_unit

FAMILY = "hf-gpt2"
_MODULE = "transformers.models.gpt2.modeling_gpt2"

TWO_UNITS_NOTE = (
    "Every GPT-2 block is two residual units, transformer.h.i.attn then transformer.h.i.mlp, each "
    "r = r + residual(r) with an identity shortcut; a model of d blocks has 2d units, all of one shape and one stage."
)
PRENORM_NOTE = (
    "Pre-norm units: the LayerNorm is inside the residual branch (ln_1 before attention, ln_2 before the MLP) and "
    "nothing follows the addition, so deleting a unit is the identity."
)
POSITION_NOTE = (
    "Positions enter once, in the stem (learned absolute embeddings wpe of positions 0..seq-1 added to the token "
    "embeddings wte); the units see no position but the stream's, so deleting and reordering are well defined "
    "(an attention's layer_idx otherwise only addresses the KV cache, which is off)."
)
INVERSE_LAYER_SCALE_NOTE = (
    "scale_attn_by_inverse_layer_idx: an attention scales its scores by 1/(layer_idx + 1), a constant the "
    "attention module holds itself, so it moves with its unit when units are reordered."
)
CROSS_ATTENTION_NOTE = (
    "The blocks' cross-attention (add_cross_attention) is not a unit: without encoder states the model skips it, "
    "and so do the units."
)
DROP_NOTE = "Dropout (embedding, attention, residual) is part of the stem and the branches (identity in eval mode)."
STEM_NOTE = (
    "The stem is wte(ids) + wpe(positions) and the embedding dropout; the head is the final LayerNorm (ln_f) and "
    "lm_head."
)


def matches(model: nn.Module) -> bool:
    """Whether ``model`` is a ``GPT2LMHeadModel`` (not a subclass) of ``GPT2Block``s; never imports transformers."""
    lm = hf.hf_class(_MODULE, "GPT2LMHeadModel")
    block = hf.hf_class(_MODULE, "GPT2Block")
    if lm is None or block is None or type(model) is not lm:
        return False
    blocks: Any = getattr(getattr(model, "transformer", None), "h", None)
    return isinstance(blocks, nn.ModuleList) and len(blocks) > 0 and all(type(b) is block for b in blocks)


def build(module: nn.Module) -> Topology:
    """The topology of a GPT-2 causal LM: two units per block, attention then MLP."""
    if not matches(module):
        raise AdapterError(f"not a GPT2LMHeadModel of GPT2Blocks: {type(module).__name__}")
    model: Any = module
    gpt: Any = model.transformer
    config = model.config
    # Before masking_utils and _update_causal_mask GPT-2's attention masked causally by its own buffer.
    masking = hf.causal_masking(gpt, config, None, self_masking=True)
    hidden = int(config.hidden_size)
    units: list[Unit] = []
    for i, block in enumerate(gpt.h):
        attn = _attention(block, masking.fn)
        units.append(token_unit(len(units), f"transformer.h.{i}.attn", hidden, block.attn, attn))
        units.append(token_unit(len(units), f"transformer.h.{i}.mlp", hidden, block.mlp, _mlp(block)))

    def stem(ids: Tensor) -> Tensor:
        pos = hf.position_ids(ids)
        return gpt.drop(gpt.wte(ids) + gpt.wpe(pos))

    def head(h: Tensor) -> Tensor:
        return model.lm_head(gpt.ln_f(h))

    notes = [TWO_UNITS_NOTE, PRENORM_NOTE, POSITION_NOTE, hf.NO_CACHE_NOTE,
             hf.mask_note(config, masking)]
    if getattr(config, "scale_attn_by_inverse_layer_idx", False):
        notes.append(INVERSE_LAYER_SCALE_NOTE)
    if any(hasattr(b, "crossattention") for b in gpt.h):
        notes.append(CROSS_ATTENTION_NOTE)
    notes += [hf.NO_PADDING_NOTE, STEM_NOTE, hf.LOGITS_NOTE]
    if hf.tied(model.lm_head, gpt.wte):
        notes.append(hf.TIED_NOTE)
    if any(getattr(config, k, 0) for k in ("embd_pdrop", "attn_pdrop", "resid_pdrop")):
        notes.append(DROP_NOTE)
    notes.append(hf.NO_RESPONSES_NOTE)
    return Topology(FAMILY, stem, tuple(units), head, model, notes=tuple(notes))


def _attention(block: Any, mask_fn: hf.MaskFn) -> Fn:
    """``attn(ln_1(r), attention_mask)``, called as ``GPT2Block.forward`` calls it, no cache, no cross-attention."""
    # The block hands position_ids on to the attention interface (flash attention reads them) where it takes them.
    pass_positions = hf.accepts(block.attn.forward, "position_ids")

    def attn(h: Tensor) -> Tensor:
        pos = hf.position_ids(h)
        kwargs: dict[str, Any] = {"attention_mask": mask_fn(h, pos)}
        if pass_positions:
            kwargs["position_ids"] = pos
        return hf.first(block.attn(block.ln_1(h), **kwargs))

    return attn


def _mlp(block: Any) -> Fn:
    """``mlp(ln_2(r))``."""

    def mlp(h: Tensor) -> Tensor:
        return block.mlp(block.ln_2(h))

    return mlp
