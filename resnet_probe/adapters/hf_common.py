"""What the Hugging Face adapters (``hf_gpt2``, ``hf_llama``) share: positions and causal masks from the stream's shape.

A unit takes and returns the residual stream (batch, seq, hidden) only, so whatever else a decoder
layer needs is computed inside the unit, per call, from the stream it is given: the positions
0..seq-1 and the causal mask for the model's attention implementation. Nothing is stashed between
calls, so a unit runs the same at any position of any plan, on any batch the executor stacks.
This module never imports transformers itself (only once a transformers model exists, at build time).
"""

from __future__ import annotations

import inspect
import sys
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
    "mask for the model's attention implementation ({impl}), made by transformers' own mask functions; nothing is "
    "shared between units, so a unit behaves the same wherever a plan puts it."
)
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


def causal_mask_fn(config: Any, sliding_window: int | None, *, self_masking: bool = False) -> MaskFn:
    """How to make the causal mask the model itself would make for an unpadded sequence, without a cache.

    From transformers 4.53 on the models call ``transformers.masking_utils.create_causal_mask`` (or
    ``create_sliding_window_causal_mask``), which returns the format the attention implementation
    wants: an additive float mask for eager, ``None`` for sdpa (then ``is_causal``), a BlockMask for
    flex attention. Its keywords changed across releases (``input_embeds`` / ``inputs_embeds``,
    ``past_key_values`` / ``cache``, ``cache_position``), so they are matched by name here, once.
    Older releases (no ``masking_utils``) get an additive 4-D float mask built here (eager and sdpa
    only), or ``None`` where the attention masks itself (``self_masking``: GPT-2's causal buffer).
    """
    try:
        from transformers import masking_utils
    except ImportError:
        return _legacy_mask_fn(config, sliding_window, self_masking)
    name = "create_causal_mask" if sliding_window is None else "create_sliding_window_causal_mask"
    create = getattr(masking_utils, name, None)
    if create is None:
        raise AdapterError(f"this transformers release has no masking_utils.{name}")
    fills: dict[str, Callable[[Tensor, Tensor], Any]] = {
        "config": lambda h, pos: config,
        "input_embeds": lambda h, pos: h,
        "inputs_embeds": lambda h, pos: h,
        "attention_mask": lambda h, pos: None,
        "cache_position": lambda h, pos: pos[0],
        "past_key_values": lambda h, pos: None,
        "cache": lambda h, pos: None,
        "position_ids": lambda h, pos: pos,
    }
    names: list[str] = []
    for p in inspect.signature(create).parameters.values():
        if p.name in fills:
            names.append(p.name)
        elif p.default is inspect.Parameter.empty and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            raise AdapterError(f"masking_utils.{name} of this transformers release needs {p.name!r}, unknown here")

    def mask(h: Tensor, pos: Tensor) -> Any:
        return create(**{n: fills[n](h, pos) for n in names})

    return mask


def _legacy_mask_fn(config: Any, sliding_window: int | None, self_masking: bool) -> MaskFn:
    """Causal masks for transformers releases before ``masking_utils`` (eager and sdpa attention only)."""
    impl = attn_implementation(config)
    if impl not in ("eager", "sdpa"):
        raise AdapterError(f"attention implementation {impl!r} needs transformers >= 4.53 here; use eager or sdpa")
    if self_masking and sliding_window is None:
        return lambda h, pos: None

    def mask(h: Tensor, pos: Tensor) -> Tensor:
        n = h.shape[1]
        q = torch.arange(n, device=h.device)[:, None]
        k = torch.arange(n, device=h.device)[None, :]
        blocked = k > q
        if sliding_window is not None:
            blocked = blocked | (q - k >= sliding_window)
        additive = torch.zeros(n, n, dtype=h.dtype, device=h.device)
        additive = additive.masked_fill(blocked, torch.finfo(h.dtype).min)
        return additive[None, None].expand(h.shape[0], 1, n, n)

    return mask


def first(output: Any) -> Tensor:
    """The hidden states of an attention's output: a tensor, or the first item of its tuple."""
    return output[0] if isinstance(output, tuple) else output


def tied(head: nn.Module, embedding: nn.Module) -> bool:
    """Whether the lm_head's weight is the token embedding's."""
    return getattr(head, "weight", None) is getattr(embedding, "weight", False)
