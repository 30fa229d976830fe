"""lemo.eval.perplexity: sliding-window perplexity on tiny models."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import LlamaForCausalLM

from lemo.eval.perplexity import perplexity, perplexity_at_lengths
from lemo.testing import tiny_model


@pytest.fixture(scope="module")
def tiny_llama() -> LlamaForCausalLM:
    return tiny_model("llama", layers=2, hidden=64, heads=4, kv_heads=2, vocab=256)


class TokenCostModel(nn.Module):
    """Fake LM whose NLL for predicting token t is cost(t), whatever the context; loss is an HF-style mean."""

    def __init__(self, cost=lambda t: 0.01 * t.float()) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device
        self.cost = cost
        self.calls = 0

    def forward(self, input_ids, labels):
        self.calls += 1
        assert not torch.is_grad_enabled() and not self.training
        targets = labels[:, 1:]  # [1, L-1], shifted as HF does
        scored = targets != -100
        return SimpleNamespace(loss=self.cost(targets[scored]).mean())


def _ids(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 256, (n,), generator=torch.Generator().manual_seed(seed))


def test_disjoint_windows_match_hand_computation(tiny_llama):
    ids = _ids(50)
    res = perplexity(tiny_llama, ids, context=16, stride=16)
    nll_sum, count = 0.0, 0
    with torch.no_grad():
        for begin in range(0, 50, 16):
            window = ids[begin : begin + 16]
            logits = tiny_llama(input_ids=window[None]).logits[0]  # [L, V]
            nll_sum += F.cross_entropy(logits[:-1].double(), window[1:], reduction="sum").item()
            count += len(window) - 1
    assert (res.windows, res.tokens, res.context, res.stride) == (4, 15 * 3 + 1, 16, 16)
    assert res.nll == pytest.approx(nll_sum / count, rel=1e-5)
    assert res.ppl == pytest.approx(math.exp(nll_sum / count), rel=1e-5)
    assert not res.truncated


@pytest.mark.parametrize(("context", "stride"), [(16, 8), (16, 1), (16, None), (10, 7), (64, 64)])
def test_every_token_is_scored_once(context, stride):
    ids = _ids(64)
    res = perplexity(TokenCostModel(), ids, context=context, stride=stride)
    assert res.tokens == 63
    assert res.nll == pytest.approx(0.01 * ids[1:].double().mean().item(), rel=1e-6)
    assert res.ppl == pytest.approx(math.exp(res.nll))


def test_sliding_windows_on_a_real_model_score_each_token_once(tiny_llama):
    ids = _ids(40)
    res = perplexity(tiny_llama, ids, context=16, stride=4)
    assert res.tokens == 39 and res.windows == 7  # starts 0, 4, ..., 24 (24 + 16 reaches the end)
    assert math.isfinite(res.ppl) and res.ppl > 1


def test_perfect_model_has_perplexity_one():
    res = perplexity(TokenCostModel(cost=lambda t: torch.zeros(t.shape)), _ids(30), context=8)
    assert res.ppl == 1.0 and res.nll == 0.0


def test_constant_loss_gives_exp_of_it():
    res = perplexity(TokenCostModel(cost=lambda t: torch.full(t.shape, 2.0)), _ids(30), context=8, stride=3)
    assert res.ppl == pytest.approx(math.exp(2.0))


def test_short_text_is_one_truncated_window():
    model = TokenCostModel()
    res = perplexity(model, _ids(10)[None], context=32)  # [1, N] accepted too
    assert res.truncated and res.windows == 1 and res.tokens == 9 and res.context == 32
    assert model.calls == 1


def test_max_windows_limits_work():
    model = TokenCostModel()
    res = perplexity(model, _ids(100), context=16, stride=8, max_windows=3)
    assert res.windows == 3 == model.calls and res.tokens == 15 + 8 + 8


def test_errors():
    with pytest.raises(ValueError, match="needs at least 2 tokens"):
        perplexity(TokenCostModel(), _ids(1), context=8)
    with pytest.raises(ValueError, match="stride=9 must be between 1 and context=8"):
        perplexity(TokenCostModel(), _ids(20), context=8, stride=9)
    with pytest.raises(ValueError, match="pass one sequence"):
        perplexity(TokenCostModel(), _ids(20).view(2, 10), context=8)


def test_restores_training_mode(tiny_llama):
    tiny_llama.train()
    perplexity(tiny_llama, _ids(20), context=8)
    assert tiny_llama.training
    tiny_llama.eval()


def test_perplexity_at_lengths(tiny_llama):
    ids = _ids(48)
    results = perplexity_at_lengths(tiny_llama, ids, [8, 16, 64], progress=False)
    assert [r.context for r in results] == [8, 16, 64]
    assert [r.truncated for r in results] == [False, False, True]
    assert results[1].ppl == pytest.approx(perplexity(tiny_llama, ids, context=16).ppl)
