"""Adapter for Hugging Face causal LMs of the Llama layout: Llama, Mistral, Qwen2, Qwen3 (``*ForCausalLM``).

Each decoder layer is two pre-norm residual units, attention then MLP, as its own forward runs them::

    r = r + self_attn(input_layernorm(r), attention_mask, position_ids, position_embeddings)
    r = r + mlp(post_attention_layernorm(r))

The stem is ``model.embed_tokens`` (input ids (batch, seq) -> stream (batch, seq, hidden)); the head
is ``model.norm`` then ``lm_head`` (logits (batch, seq, vocab)). What the attention needs besides the
stream is computed inside the unit, per call, from the stream's shape: positions 0..seq-1, the rotary
cos/sin from the model's one ``model.rotary_emb`` and the causal mask (sliding-window where the layer
has one). Every unit has the stream's shape, so all are stage 1: the reorder analysis swaps units
within a stage, and a layer-per-stage split would forbid every swap but attention <-> MLP of one
layer. The family is recognised by the decoder layer's class (``LlamaDecoderLayer``,
``MistralDecoderLayer``, ``Qwen2DecoderLayer``, ``Qwen3DecoderLayer``, whose forwards are the
two lines above) and the exact ``*ForCausalLM`` class around it. Never imports transformers itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from resnet_probe.adapters import hf_common as hf
from resnet_probe.errors import AdapterError
from resnet_probe.structure import Fn, Topology, Unit, token_unit

LAYOUT = "hf-llama"  # the layout; a topology names its own family: hf-llama, hf-mistral, hf-qwen2, hf-qwen3


@dataclass(frozen=True)
class _Family:
    """One transformers model family of the Llama layout: where its classes live and their prefix."""

    name: str
    module: str
    prefix: str
    window: str  # where a layer's sliding window is read: "attention" (its own), "config" (every layer), "none"

    def cls(self, suffix: str) -> type | None:
        return hf.hf_class(self.module, self.prefix + suffix)


FAMILIES: tuple[_Family, ...] = (
    _Family("llama", "transformers.models.llama.modeling_llama", "Llama", "none"),
    _Family("mistral", "transformers.models.mistral.modeling_mistral", "Mistral", "config"),
    _Family("qwen2", "transformers.models.qwen2.modeling_qwen2", "Qwen2", "attention"),
    _Family("qwen3", "transformers.models.qwen3.modeling_qwen3", "Qwen3", "attention"),
)
_LAYER_PARTS = {"self_attn", "mlp", "input_layernorm", "post_attention_layernorm"}

TWO_UNITS_NOTE = (
    "Every decoder layer is two residual units, model.layers.i.self_attn then model.layers.i.mlp, each "
    "r = r + residual(r) with an identity shortcut; a model of d layers has 2d units, all of one shape and one stage."
)
PRENORM_NOTE = (
    "Pre-norm units: the RMSNorm is inside the residual branch (input_layernorm before attention, "
    "post_attention_layernorm before the MLP) and nothing follows the addition, so deleting a unit is the identity."
)
ROTARY_NOTE = (
    "Rotary position embeddings: each attention unit computes cos/sin for positions 0..seq-1 with the model's one "
    "rotary_emb (shared by all layers), so the positions are the token's, never the layer's."
)
LAYER_IDX_NOTE = (
    "An attention's layer_idx only addresses the KV cache, which is off, so a unit depends on nothing positional "
    "but what it holds itself: deleting and reordering units are well defined."
)
SLIDING_NOTE = (
    "Sliding-window attention: the layers that have it ({layers} of {total}) mask keys more than {window} tokens "
    "back; the window belongs to the layer's own attention and moves with its unit."
)
STEM_NOTE = (
    "The stem is the token embedding (model.embed_tokens); the head is the final RMSNorm (model.norm) and lm_head."
)


def _family(model: nn.Module) -> _Family | None:
    """The family whose exact ``*ForCausalLM`` class ``model`` is, if any."""
    if not hf.is_transformers(model):
        return None
    for family in FAMILIES:
        if family.cls("ForCausalLM") is type(model):
            return family
    return None


def matches(model: nn.Module) -> bool:
    """Whether ``model`` is a Llama / Mistral / Qwen2 / Qwen3 ``*ForCausalLM`` of its own decoder layers."""
    family = _family(model)
    if family is None:
        return False
    inner: Any = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    layer_cls = family.cls("DecoderLayer")
    if not isinstance(layers, nn.ModuleList) or layer_cls is None or not len(layers):
        return False
    # The exact layer class, of the parts its forward uses and nothing else.
    return all(type(layer) is layer_cls and {n for n, _ in layer.named_children()} == _LAYER_PARTS for layer in layers)


def build(module: nn.Module) -> Topology:
    """The topology of a Llama-layout causal LM: two units per decoder layer, attention then MLP."""
    family = _family(module)
    if family is None or not matches(module):
        raise AdapterError(
            f"not a Llama-layout causal LM ({', '.join(f.prefix + 'ForCausalLM' for f in FAMILIES)} of their own "
            f"decoder layers): {type(module).__name__}"
        )
    model: Any = module
    inner: Any = model.model
    config = model.config
    rotary = getattr(inner, "rotary_emb", None)  # older releases compute rotary inside each attention
    units: list[Unit] = []
    windows: list[int] = []
    for i, layer in enumerate(inner.layers):
        window = _sliding_window(family, layer.self_attn, config)
        masking = hf.causal_masking(inner, config, window)
        if window is not None and masking.source == "masking_utils":  # else one mask is every layer's
            windows.append(window)
        attn = _attention(layer, rotary, masking.fn)
        mlp = _mlp(layer)
        hidden = int(config.hidden_size)
        units.append(token_unit(len(units), f"model.layers.{i}.self_attn", hidden, layer.self_attn, attn))
        units.append(token_unit(len(units), f"model.layers.{i}.mlp", hidden, layer.mlp, mlp))

    def stem(ids: Tensor) -> Tensor:
        return inner.embed_tokens(ids)

    def head(h: Tensor) -> Tensor:
        return model.lm_head(inner.norm(h))

    notes = [TWO_UNITS_NOTE, PRENORM_NOTE, ROTARY_NOTE, LAYER_IDX_NOTE, hf.NO_CACHE_NOTE,
             hf.mask_note(config, masking)]
    if windows:
        notes.append(SLIDING_NOTE.format(layers=len(windows), total=len(inner.layers), window=min(windows)))
    notes += [hf.NO_PADDING_NOTE, STEM_NOTE, hf.LOGITS_NOTE]
    if hf.tied(model.lm_head, inner.embed_tokens):
        notes.append(hf.TIED_NOTE)
    notes.append(hf.NO_RESPONSES_NOTE)
    return Topology(f"hf-{family.name}", stem, tuple(units), head, model, notes=tuple(notes))


def _sliding_window(family: _Family, attn: nn.Module, config: Any) -> int | None:
    """The layer's sliding window as its model masks it (None: full causal attention).

    Qwen2 / Qwen3 attentions hold their own (``None`` on full-attention layers); Mistral's model masks
    every layer with ``config.sliding_window``; Llama has none. Only the masking_utils era reads it:
    before, the model's one ``_update_causal_mask`` is every layer's (see ``hf_common.causal_masking``).
    """
    if family.window == "attention":
        window = getattr(attn, "sliding_window", None)
    elif family.window == "config":
        window = getattr(config, "sliding_window", None)
    else:
        window = None
    return None if window is None else int(window)


def _attention(layer: Any, rotary: nn.Module | None, mask_fn: hf.MaskFn) -> Fn:
    """``self_attn(input_layernorm(r), ...)``, called as the decoder layer's own forward calls it, no cache."""

    def attn(h: Tensor) -> Tensor:
        pos = hf.position_ids(h)
        kwargs: dict[str, Any] = {"attention_mask": mask_fn(h, pos), "position_ids": pos}
        if rotary is not None:
            kwargs["position_embeddings"] = rotary(h, pos)
        return hf.first(layer.self_attn(hidden_states=layer.input_layernorm(h), **kwargs))

    return attn


def _mlp(layer: Any) -> Fn:
    """``mlp(post_attention_layernorm(r))``."""

    def mlp(h: Tensor) -> Tensor:
        return layer.mlp(layer.post_attention_layernorm(h))

    return mlp
