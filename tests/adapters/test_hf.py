"""Hugging Face causal LMs as stem -> units -> head: GPT-2 and the Llama layout (Llama, Mistral, Qwen2, Qwen3).

Every model is built offline from a small random config. The adapter contract per decoder layer
(``resid_out == resid_in + attn_out + mlp_out``) is checked against the real layer's input and
output during ``model(ids)``; deletions against the model with that branch's output zeroed by a hook;
reorders against the model with its layers permuted.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any, Callable, Iterator

import pytest
import torch
from torch import Tensor, nn

transformers = pytest.importorskip("transformers")

from resnet_probe.adapters import build_topology, hf_gpt2, hf_llama  # noqa: E402
from resnet_probe.errors import AdapterError  # noqa: E402
from resnet_probe.executor import Executor, Plan  # noqa: E402
from resnet_probe.structure import Topology, identity  # noqa: E402

ATOL = 1e-5
VOCAB, HIDDEN, LAYERS, SEQ = 128, 32, 3, 12
IMPLS = ("eager", "sdpa")
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _llama_kwargs(**kwargs: Any) -> dict[str, Any]:
    base = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=64, num_hidden_layers=LAYERS,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return {**base, **kwargs}


def gpt2(impl: str = "sdpa", **kwargs: Any) -> Any:
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=LAYERS, n_head=4, n_positions=64,
                                     bos_token_id=0, eos_token_id=0, attn_implementation=impl, **kwargs)
    return transformers.GPT2LMHeadModel(config).eval()


def llama(impl: str = "sdpa", **kwargs: Any) -> Any:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**_llama_kwargs(attn_implementation=impl, **kwargs))
    return transformers.LlamaForCausalLM(config).eval()


def qwen2(impl: str = "sdpa", **kwargs: Any) -> Any:
    torch.manual_seed(0)
    config = transformers.Qwen2Config(**_llama_kwargs(attn_implementation=impl, **kwargs))
    return transformers.Qwen2ForCausalLM(config).eval()


def qwen3(impl: str = "sdpa", **kwargs: Any) -> Any:
    if not hasattr(transformers, "Qwen3Config"):
        pytest.skip(f"transformers {transformers.__version__} has no Qwen3 (4.51+)")
    torch.manual_seed(0)
    config = transformers.Qwen3Config(**_llama_kwargs(attn_implementation=impl, head_dim=8, **kwargs))
    return transformers.Qwen3ForCausalLM(config).eval()


def mistral(impl: str = "sdpa", **kwargs: Any) -> Any:
    torch.manual_seed(0)
    config = transformers.MistralConfig(**_llama_kwargs(attn_implementation=impl, **{"sliding_window": 4, **kwargs}))
    return transformers.MistralForCausalLM(config).eval()


# name -> (builder, the family its topology reports)
FAMILIES: dict[str, tuple[Callable[..., Any], str]] = {
    "gpt2": (gpt2, "hf-gpt2"),
    "llama": (llama, "hf-llama"),
    "qwen2": (qwen2, "hf-qwen2"),
    "qwen3": (qwen3, "hf-qwen3"),
    "mistral": (mistral, "hf-mistral"),
}
# Variants that change what a unit or the stem / head computes.
VARIANTS: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [
    ("gpt2", gpt2, {}),
    ("gpt2-inverse-layer-scale", gpt2, {"scale_attn_by_inverse_layer_idx": True}),
    ("gpt2-upcast", gpt2, {"reorder_and_upcast_attn": True}),
    ("gpt2-cross-attention", gpt2, {"add_cross_attention": True}),
    ("gpt2-untied-gelu", gpt2, {"tie_word_embeddings": False, "activation_function": "gelu"}),
    ("llama", llama, {}),
    ("llama-biases-tied-mha", llama, {"attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True,
                                      "num_key_value_heads": 4}),
    ("qwen2", qwen2, {}),
    ("qwen2-sliding", qwen2, {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}),
    ("qwen3", qwen3, {}),
    ("mistral-sliding", mistral, {}),
    ("mistral-full", mistral, {"sliding_window": None}),
]


def _uses_masking_utils(model: nn.Module) -> bool:
    """Whether the model's own module makes its masks with transformers.masking_utils (4.53+, per family)."""
    return hasattr(sys.modules[type(model).__module__], "create_causal_mask")


def ids(seed: int = 1, batch: int = 2, seq: int = SEQ) -> Tensor:
    """Random token ids (batch, seq)."""
    return torch.randint(0, VOCAB, (batch, seq), generator=torch.Generator().manual_seed(seed))


def decoder_layers(model: Any) -> list[Any]:
    inner: Any = model.transformer.h if hasattr(model, "transformer") else model.model.layers
    return list(inner)


def branches(model: Any) -> list[tuple[nn.Module, nn.Module]]:
    """(attention, MLP) of each decoder layer."""
    return [(getattr(layer, "attn", None) or layer.self_attn, layer.mlp) for layer in decoder_layers(model)]


def _first(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def logits(model: nn.Module, x: Tensor) -> Tensor:
    return model(x, use_cache=False).logits


def _assert_untouched(model: nn.Module, before: dict[str, Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    for module in model.modules():
        for hooks in _HOOK_DICTS:
            assert not getattr(module, hooks), f"{type(module).__name__}.{hooks} left behind"


@pytest.fixture
def hooks() -> Iterator[list[Any]]:
    """Handles to remove after the test, also when it fails."""
    handles: list[Any] = []
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_units_names_and_shapes(name: str) -> None:
    build, family = FAMILIES[name]
    model = build()
    topo = build_topology(model)
    assert topo.family == family and topo.n_units == 2 * LAYERS and not topo.transitions
    assert topo.stages() == [list(range(2 * LAYERS))]
    if name == "gpt2":
        expected = [f"transformer.h.{i}.{p}" for i in range(LAYERS) for p in ("attn", "mlp")]
    else:
        expected = [f"model.layers.{i}.{p}" for i in range(LAYERS) for p in ("self_attn", "mlp")]
    assert [u.name for u in topo.units] == expected
    for unit, module in zip(topo.units, [m for pair in branches(model) for m in pair], strict=True):
        assert model.get_submodule(unit.name) is module and unit.module is module
        assert (unit.in_channels, unit.out_channels, unit.stride, unit.downsampling) == (HIDDEN, HIDDEN, 1, False)
        assert unit.shortcut_kind == "identity" and unit.shortcut is identity and unit.post is identity
        assert unit.join == "sum" and unit.responses == () and unit.deletable
    assert topo.notes and all(isinstance(n, str) and n.endswith(".") for n in topo.notes)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_layer_is_attention_unit_then_mlp_unit(name: str, impl: str, hooks: list[Any]) -> None:
    """The adapter contract: resid_out == resid_in + attn_out + mlp_out, against the real layer in model(ids)."""
    model = FAMILIES[name][0](impl)
    topo = build_topology(model)
    seen: list[tuple[Tensor, Tensor]] = []

    def record(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
        resid_in = args[0] if args else kwargs["hidden_states"]
        seen.append((resid_in.detach().clone(), _first(out).detach().clone()))

    for layer in decoder_layers(model):
        hooks.append(layer.register_forward_hook(record, with_kwargs=True))
    logits(model, ids())
    for h in hooks:
        h.remove()
    assert len(seen) == LAYERS
    with torch.no_grad():
        for i, (resid_in, resid_out) in enumerate(seen):
            attn, mlp = topo.units[2 * i], topo.units[2 * i + 1]
            attn_out = attn.residual(resid_in)
            mlp_out = mlp.residual(resid_in + attn_out)
            assert attn_out.shape == mlp_out.shape == (2, SEQ, HIDDEN) and attn_out.abs().max() > 1e-4
            torch.testing.assert_close(resid_in + attn_out + mlp_out, resid_out, rtol=0, atol=ATOL)
            torch.testing.assert_close(mlp.forward(attn.forward(resid_in)), resid_out, rtol=0, atol=ATOL)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(("label", "build", "kwargs"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_forward_equals_model(label: str, build: Callable[..., nn.Module], kwargs: dict[str, Any], impl: str) -> None:
    model = build(impl, **kwargs)
    topo = build_topology(model)
    x = ids()
    try:
        expected = logits(model, x)
    except RuntimeError as exc:  # e.g. GPT-2's reorder_and_upcast_attn under eager in transformers 4.53
        pytest.skip(f"the model itself fails in transformers {transformers.__version__}: {exc}")
    with torch.no_grad():
        got = topo.forward(x)
    assert expected.shape == (2, SEQ, VOCAB) and expected.abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)
    torch.testing.assert_close(Executor(topo).forward(x), expected, rtol=0, atol=ATOL)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_deleting_a_branch_equals_zeroing_its_output(name: str, impl: str, hooks: list[Any]) -> None:
    model = FAMILIES[name][0](impl)
    topo = build_topology(model)
    before = copy.deepcopy(model.state_dict())
    x = ids()
    plans = [Plan.delete(i) for i in range(topo.n_units)] + [Plan.delete(0, 3), Plan()]
    got = Executor(topo).run_plans(x, plans, reduce=lambda z: z.clone())

    def zero(_m: nn.Module, _args: Any, out: Any) -> Any:
        if isinstance(out, tuple):
            return (torch.zeros_like(out[0]), *out[1:])
        return torch.zeros_like(out)

    modules = [m for pair in branches(model) for m in pair]
    for plan, out in zip(plans, got, strict=True):
        for i in plan.deleted:
            hooks.append(modules[i].register_forward_hook(zero))
        expected = logits(model, x)
        while hooks:
            hooks.pop().remove()
        torch.testing.assert_close(out, expected, rtol=0, atol=ATOL)
    full = got[-1]
    assert all(not torch.allclose(out, full) for out in got[:-1])
    _assert_untouched(model, before)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen3"])
def test_reordering_units_equals_permuting_layers(name: str, impl: str) -> None:
    """Units do not depend on their position: running layer 2 first equals the model with its layers permuted."""
    kwargs = {"scale_attn_by_inverse_layer_idx": True} if name == "gpt2" else {}
    model = FAMILIES[name][0](impl, **kwargs)
    topo = build_topology(model)
    x = ids()
    order = (4, 5, 0, 1, 2, 3)  # layer 2, then layers 0 and 1
    got = Executor(topo).forward(x, Plan(order=order))
    permuted = copy.deepcopy(model)
    stack: Any = permuted.transformer if name == "gpt2" else permuted.model
    layers = stack.h if name == "gpt2" else stack.layers
    reordered = nn.ModuleList([layers[2], layers[0], layers[1]])
    if name == "gpt2":
        stack.h = reordered
    else:
        stack.layers = reordered
    torch.testing.assert_close(got, logits(permuted, x), rtol=0, atol=ATOL)
    assert not torch.allclose(got, logits(model, x))
    # Attention and MLP of one layer trade places as well (same shape, one stage).
    swapped = Executor(topo).forward(x, Plan(order=(1, 0, 2, 3, 4, 5)))
    with torch.no_grad():
        h = topo.stem(x)
        for i in (1, 0, 2, 3, 4, 5):
            h = h + topo.units[i].residual(h)
        torch.testing.assert_close(swapped, topo.head(h), rtol=0, atol=ATOL)


def test_sliding_window_limits_what_a_position_sees() -> None:
    """Mistral, window 4, 3 layers: position 11 sees at most 3 * 3 = 9 tokens back, never token 0 nor 1."""
    model = mistral("eager")
    topo = build_topology(model)
    a = ids()
    b = a.clone()
    b[:, :2] = (b[:, :2] + 1) % VOCAB
    with torch.no_grad():
        for run in (topo.forward, lambda z: logits(model, z)):
            torch.testing.assert_close(run(a)[:, -1], run(b)[:, -1], rtol=0, atol=0)
            assert not torch.allclose(run(a)[:, 3], run(b)[:, 3])
    full = build_topology(mistral("eager", sliding_window=None))
    with torch.no_grad():
        assert not torch.allclose(full.forward(a)[:, -1], full.forward(b)[:, -1])
    assert not any("Sliding-window" in n for n in full.notes)
    model = qwen2(use_sliding_window=True, sliding_window=4, max_window_layers=1)
    qwen = build_topology(model)
    if _uses_masking_utils(model):
        assert any("Sliding-window" in n and "(3 of 3)" in n for n in topo.notes)
        assert any("(2 of 3)" in n for n in qwen.notes)  # layers 1 and 2 slide, layer 0 attends in full
    else:  # releases before masking_utils: one mask from the model's _update_causal_mask for every layer
        assert all(any("_update_causal_mask" in n for n in t.notes) for t in (topo, qwen))


def test_model_untouched_and_mode_restored() -> None:
    model = llama()
    topo = build_topology(model)
    before = copy.deepcopy(model.state_dict())
    model.train()
    x = ids()
    Executor(topo).run_plans(x, [Plan(), Plan.delete(2), Plan(order=(2, 3, 0, 1, 4, 5))], reduce=lambda z: z.sum())
    assert all(m.training for m in model.modules())
    _assert_untouched(model, before)


def test_stacked_plans_and_rebinding() -> None:
    """Plans stacked along the batch (masks come from the stream's shape) and a rebound copy give the same logits."""
    model = gpt2()
    topo = build_topology(model)
    x = ids(batch=3)
    plans = [Plan(), Plan.delete(1), Plan.delete(4), Plan.delete(1, 4)]
    plain = Executor(topo, stack=1).run_plans(x, plans, reduce=lambda z: z.clone())
    stacked = Executor(topo, stack=4).run_plans(x, plans, reduce=lambda z: z.clone())
    for a, b in zip(plain, stacked, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=ATOL)
    twin = copy.deepcopy(model)
    rebound = topo.rebind(twin)
    assert rebound.family == topo.family and rebound.units[0].module is twin.transformer.h[0].attn
    with torch.no_grad():
        torch.testing.assert_close(rebound.forward(x), plain[0], rtol=0, atol=ATOL)


@pytest.mark.parametrize("seq", [1, 5, 16])
def test_any_sequence_length(seq: int) -> None:
    for model in (gpt2(), llama("eager")):
        x = ids(seq=seq)
        with torch.no_grad():
            torch.testing.assert_close(build_topology(model).forward(x), logits(model, x), rtol=0, atol=ATOL)


def test_matches_and_dispatch() -> None:
    g, lm = gpt2(), llama()
    assert hf_gpt2.matches(g) and not hf_llama.matches(g)
    assert hf_llama.matches(lm) and not hf_gpt2.matches(lm)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**_llama_kwargs())
    others = [
        transformers.LlamaModel(config),  # no head
        transformers.LlamaForSequenceClassification(config),
        transformers.GPT2DoubleHeadsModel(transformers.GPT2Config(n_embd=HIDDEN, n_layer=1, n_head=4)),
        nn.Sequential(nn.Linear(2, 2)),
    ]
    for other in others:
        assert not hf_gpt2.matches(other) and not hf_llama.matches(other)
    with pytest.raises(AdapterError, match="not a GPT2LMHeadModel"):
        hf_gpt2.build(lm)
    with pytest.raises(AdapterError, match="not a Llama-layout causal LM"):
        hf_llama.build(g)


def test_a_foreign_layer_is_refused() -> None:
    """A decoder layer of another class (a user's subclass, a parallel block) is not read as the Llama layout."""
    model = llama()

    class Custom(type(model.model.layers[0])):  # type: ignore[misc]
        pass

    odd = copy.deepcopy(model)
    odd.model.layers[1].__class__ = Custom
    assert not hf_llama.matches(odd)
    extra = copy.deepcopy(model)
    extra.model.layers[0].extra_norm = nn.LayerNorm(HIDDEN)
    assert not hf_llama.matches(extra)
    g = copy.deepcopy(gpt2())
    g.transformer.h[0].__class__ = type("MyBlock", (type(g.transformer.h[0]),), {})
    assert not hf_gpt2.matches(g)


def test_notes_say_how_units_are_read() -> None:
    g = build_topology(gpt2(scale_attn_by_inverse_layer_idx=True, add_cross_attention=True))
    for note in (hf_gpt2.TWO_UNITS_NOTE, hf_gpt2.PRENORM_NOTE, hf_gpt2.POSITION_NOTE,
                 hf_gpt2.INVERSE_LAYER_SCALE_NOTE, hf_gpt2.CROSS_ATTENTION_NOTE, hf_gpt2.STEM_NOTE):
        assert note in g.notes
    lm: Topology = build_topology(llama("eager", tie_word_embeddings=True))
    for note in (hf_llama.TWO_UNITS_NOTE, hf_llama.PRENORM_NOTE, hf_llama.ROTARY_NOTE, hf_llama.LAYER_IDX_NOTE,
                 hf_llama.STEM_NOTE):
        assert note in lm.notes
    assert any("(eager)" in n for n in lm.notes) and any("tied" in n for n in lm.notes)
    assert not any("tied" in n for n in build_topology(llama()).notes)
    assert "hf-llama" in str(lm) and "model.layers.2.mlp" in str(lm)


def test_package_does_not_import_transformers() -> None:
    code = (
        "import sys, torch; import resnet_probe, resnet_probe.adapters as a;"
        "from resnet_probe.models.zoo.cifar import CifarResNet;"
        "assert a.build_topology(CifarResNet(3)).n_units == 9;"
        "assert 'transformers' not in sys.modules, 'transformers imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
