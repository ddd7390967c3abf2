"""What the Hugging Face adapters (``hf_gpt2``, ``hf_llama``) share: positions and causal masks from the stream's shape.

A unit takes and returns the residual stream (batch, seq, hidden) only, so whatever else a decoder
layer needs is computed inside the unit, per call, from the stream it is given: the positions
0..seq-1 and the causal mask for the model's attention implementation. Nothing is stashed between
calls, so a unit runs the same at any position of any plan, on any batch the executor stacks.
This module never imports transformers itself (only once a transformers model exists, at build time).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor, nn

from resnet_probe.errors import AdapterError

MaskFn = Callable[[Tensor, Tensor], Any]  # (stream, position_ids) -> mask (a tensor, a BlockMask or None)

NO_CACHE_NOTE = (
    "The units run without a KV cache (use_cache=False): every call attends over the whole sequence it is given."
)
MASK_NOTE = (
    "Each unit computes what its layer needs from the stream's shape, per call: positions 0..seq-1 and the causal "
    "mask for the model's attention implementation ({impl}), {source}; nothing is shared between units, so a unit "
    "behaves the same wherever a plan puts it."
)
MASK_SOURCES = {
    "masking_utils": "made by the mask functions the model's own module calls (transformers.masking_utils)",
    "model": "made by the model's own _update_causal_mask (one mask for all layers, as this release makes it)",
    "attention": "which the attention applies itself (its causal buffer)",
}
NO_PADDING_NOTE = (
    "Input ids are (batch, seq) without padding: no attention mask is taken, every position is a real token."
)
TIED_NOTE = "The head's lm_head shares its weight with the stem's token embedding (tied embeddings)."
LOGITS_NOTE = "The head returns logits (batch, seq, vocab) for every position, as model(ids).logits does."
NO_RESPONSES_NOTE = (
    "No layer responses are read (He et al. Fig. 7 counts 3x3 conv outputs; these units have none)."
)


def is_transformers(model: nn.Module) -> bool:
    """Whether ``model``'s class comes from transformers (never imports it)."""
    return type(model).__module__.startswith("transformers.") and "transformers" in sys.modules


def hf_class(module_name: str, class_name: str) -> type | None:
    """A transformers class if its module is already imported, else None (a model of it cannot exist yet)."""
    module = sys.modules.get(module_name)
    return getattr(module, class_name, None) if module is not None else None


def attn_implementation(config: Any) -> str:
    """The attention implementation the model runs (``eager``, ``sdpa``, ``flash_attention_2``, ...)."""
    return str(getattr(config, "_attn_implementation", None) or "eager")


def position_ids(h: Tensor) -> Tensor:
    """Positions 0..seq-1 of (batch, seq) ids or a (batch, seq, hidden) stream, (1, seq) as the models make them."""
    return torch.arange(h.shape[1], device=h.device).unsqueeze(0)


def accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes a keyword ``name`` (as a parameter or through ``**kwargs``)."""
    params = inspect.signature(fn).parameters.values()
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


@dataclass(frozen=True)
class Masking:
    """How a unit makes its layer's causal mask: ``fn(stream, position_ids)``, and where it comes from."""

    fn: MaskFn
    source: str  # "masking_utils", "model" (its own _update_causal_mask) or "attention" (it masks itself)


def causal_masking(stack: nn.Module, config: Any, sliding_window: int | None, *, self_masking: bool = False) -> Masking:
    """The causal mask the model itself would make for an unpadded sequence without a cache, as the model makes it.

    ``stack`` is the decoder stack (``LlamaModel``, ``GPT2Model``); whatever its own modeling module
    uses is used here. Since ``transformers.masking_utils`` (4.53, per model family over the next
    releases) the modules call ``create_causal_mask`` / ``create_sliding_window_causal_mask``, which
    return the format the attention implementation wants: an additive float mask for eager, ``None``
    for sdpa (then ``is_causal``), a BlockMask for flex attention. Their keywords changed across
    releases (``input_embeds`` / ``inputs_embeds``, ``past_key_values`` / ``cache``,
    ``cache_position``), so they are matched by name, once. Before that the stack's own
    ``_update_causal_mask`` made one mask for all layers (sliding windows included where that release
    applied them); GPT-2's attention masked causally by its own buffer (``self_masking``: no mask).
    """
    module = sys.modules.get(type(stack).__module__)
    if hasattr(module, "create_causal_mask"):
        name = "create_causal_mask" if sliding_window is None else "create_sliding_window_causal_mask"
        create = getattr(module, name, None) or getattr(importlib.import_module("transformers.masking_utils"), name)
        return Masking(_matched_call(create, name, {
            "config": lambda h, pos: config,
            "input_embeds": lambda h, pos: h,
            "inputs_embeds": lambda h, pos: h,
            "attention_mask": lambda h, pos: None,
            "cache_position": lambda h, pos: pos[0],
            "past_key_values": lambda h, pos: None,
            "cache": lambda h, pos: None,
            "position_ids": lambda h, pos: pos,
        }), "masking_utils")
    update = getattr(stack, "_update_causal_mask", None)
    if update is not None:
        return Masking(_matched_call(update, "_update_causal_mask", {
            "attention_mask": lambda h, pos: None,
            "input_tensor": lambda h, pos: h,
            "cache_position": lambda h, pos: pos[0],
            "past_key_values": lambda h, pos: None,
            "use_cache": lambda h, pos: False,
            "output_attentions": lambda h, pos: False,
        }), "model")
    if self_masking:
        return Masking(lambda h, pos: None, "attention")
    raise AdapterError(
        f"{type(stack).__name__} of transformers {_version()} makes its causal mask in a way this adapter does not "
        "know (neither masking_utils nor _update_causal_mask)"
    )


def _matched_call(fn: Callable[..., Any], name: str, fills: dict[str, Callable[[Tensor, Tensor], Any]]) -> MaskFn:
    """``fn`` called with the keywords it takes out of ``fills``; a required one not in ``fills`` is refused now."""
    names: list[str] = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in fills:
            names.append(p.name)
        elif p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            raise AdapterError(f"{name} of transformers {_version()} needs {p.name!r}, which this adapter cannot give")

    def call(h: Tensor, pos: Tensor) -> Any:
        return fn(**{n: fills[n](h, pos) for n in names})

    return call


def _version() -> str:
    return str(getattr(sys.modules.get("transformers"), "__version__", "?"))


def mask_note(config: Any, masking: Masking) -> str:
    """The note that says how the units make positions and masks."""
    return MASK_NOTE.format(impl=attn_implementation(config), source=MASK_SOURCES[masking.source])


def first(output: Any) -> Tensor:
    """The hidden states of an attention's output: a tensor, or the first item of its tuple."""
    return output[0] if isinstance(output, tuple) else output


def tied(head: nn.Module, embedding: nn.Module) -> bool:
    """Whether the lm_head's weight is the token embedding's."""
    return getattr(head, "weight", None) is getattr(embedding, "weight", False)
