"""Language-model metrics: next-token accuracy per sequence, perplexity, and their statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import resnet_probe as rp
from resnet_probe.errors import MetricError
from resnet_probe.metrics import MEAN, NAMED, next_token_accuracy, perplexity, resolve_metric, sequence_loss
from resnet_probe.scoring import Score, paired_tests
from resnet_probe.stats import pack_floats


def _logits(ids: torch.Tensor, vocab: int, right: torch.Tensor) -> torch.Tensor:
    """Logits whose argmax at t is ids[t+1] where ``right`` (batch, seq-1) is True, else another token."""
    batch, seq = ids.shape
    out = torch.zeros(batch, seq, vocab)
    for b in range(batch):
        for t in range(seq - 1):
            target = int(ids[b, t + 1])
            out[b, t, target if right[b, t] else (target + 1) % vocab] = 5.0
    return out


def test_next_token_accuracy_counts_each_sequence_share() -> None:
    ids = torch.tensor([[1, 2, 3, 4, 0], [4, 3, 2, 1, 0]])
    right = torch.tensor([[True, True, False, True], [False, False, False, True]])
    acc = next_token_accuracy(_logits(ids, 5, right), ids)
    assert acc.dtype == torch.float64
    assert acc.tolist() == [0.75, 0.25]
    assert NAMED["next_token"].kind == MEAN and NAMED["next_token"].higher_is_better
    assert resolve_metric("next_token").values(_logits(ids, 5, right), ids).tolist() == [0.75, 0.25]


def test_next_token_refuses_class_outputs_and_bad_ids() -> None:
    with pytest.raises(MetricError, match="language-model metric"):
        next_token_accuracy(torch.zeros(4, 10), torch.zeros(4, dtype=torch.long))
    with pytest.raises(MetricError, match=r"outside \[0, 5\)"):
        next_token_accuracy(torch.zeros(1, 3, 5), torch.tensor([[0, 7, 1]]))


def test_perplexity_is_exp_of_the_mean_token_loss() -> None:
    torch.manual_seed(0)
    logits, ids = torch.randn(3, 6, 7), torch.randint(0, 7, (3, 6))
    per_sequence = sequence_loss(logits, ids)
    token_mean = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), ids[:, 1:].reshape(-1))
    # equal-length sequences: the mean of the sequence means is the mean over tokens
    assert math.isclose(perplexity(float(per_sequence.mean())), math.exp(float(token_mean)), rel_tol=1e-6)


def test_a_mean_metric_counts_a_fall_as_lost() -> None:
    base = np.array([0.5, 0.5, 0.5, 0.5])
    worse = np.array([0.25, 0.25, 0.5, 0.75])
    mk = lambda v: Score(0, 4, 0.0, None, kind=MEAN, values=pack_floats(v), value_sum=float(v.sum()))  # noqa: E731
    (test,) = paired_tests(mk(base), [mk(worse)], 0.95)
    assert (test.lost, test.gained) == (2, 1)


def test_lesion_of_a_language_model_by_next_token() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=32)
    model = transformers.GPT2LMHeadModel(config).eval()
    ids = torch.randint(0, 50, (12, 16))
    result = rp.lesion(model, ids, metric="next_token")
    assert (result.metric, result.metric_kind, result.higher_is_better) == ("next_token", MEAN, True)
    with torch.no_grad():
        expected = next_token_accuracy(model(ids).logits, ids).mean().item()
    frame = result.to_frame()
    assert frame.loc[0, "next_token"] == pytest.approx(expected, abs=1e-12)
    assert frame["accuracy"].isna().all() and frame["correct"].isna().all()  # no class targets: not 0
    assert len(frame) == 1 + 4  # the baseline, then attn and mlp of two blocks
    loss = rp.lesion(model, ids).to_frame()
    with torch.no_grad():
        token_loss = sequence_loss(model(ids).logits, ids).mean().item()
    assert loss.loc[0, "loss"] == pytest.approx(token_loss, rel=1e-6)
    assert loss.loc[0, "perplexity"] == pytest.approx(math.exp(token_loss), rel=1e-6)
