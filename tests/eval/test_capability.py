"""lemo.eval.capability: teacher-forced and greedy exact match, results I/O and the heatmap."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lemo.eval.capability import evaluate_capability, score_greedy, score_teacher
from lemo.eval.capability_result import CapabilityResult, CapabilityRow
from lemo.eval.tasks import make_sample, make_samples
from lemo.testing import tiny_model

VOCAB = 49152


class OracleLM(nn.Module):
    """Fake LM that knows the samples: at each position it puts the sample's next token on top (or, with
    `wrong`, the token after it). It keeps no KV cache unless `cached`, then it takes and returns `cache`."""

    def __init__(self, samples, wrong: bool = False, cached: bool = False) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the model a device
        self.seqs = [s.prompt_ids + s.answer_ids for s in samples]
        self.wrong, self.cached = wrong, cached

    def forward(self, input_ids, use_cache=None, logits_to_keep=0, cache=None):
        assert not torch.is_grad_enabled() and not self.training
        assert cache is None or self.cached
        new = input_ids[0].tolist()
        seen = (cache or []) + new
        keep = logits_to_keep or len(new)
        logits = torch.zeros(1, keep, VOCAB)  # [1, keep, V]
        for i, t in enumerate(range(len(seen) - keep, len(seen))):
            # The sample that agrees with the input up to t predicts the token after t.
            seq = next((s for s in self.seqs if s[: t + 1] == seen[: t + 1]), None)
            nxt = seq[t + 1] if seq is not None and t + 1 < len(seq) else 0
            logits[0, i, (nxt + int(self.wrong)) % VOCAB] = 1.0
        return SimpleNamespace(logits=logits, cache=seen if self.cached else None)


LENGTHS, DEPTHS = [256, 384], [0.0, 0.5, 1.0]


def _samples(filler, tok, task="multikey"):
    return make_samples(task, filler, tok, LENGTHS, DEPTHS, 2, seed=3, n_keys=4)


@pytest.mark.parametrize("cached", [False, True])
def test_an_oracle_scores_one_and_a_wrong_model_zero(filler, tok, cached):
    samples = _samples(filler, tok)
    for wrong, expected in ((False, 1.0), (True, 0.0)):
        model = OracleLM(samples, wrong=wrong, cached=cached).train()
        res = evaluate_capability(
            model, tok, "multikey", filler, LENGTHS, DEPTHS, 2, seed=3, n_keys=4, progress=False
        )
        assert model.training  # restored
        assert len(res.rows) == len(LENGTHS) * len(DEPTHS) * 2
        assert all(r.accuracy == expected and r.n == 2 for r in res.rows)
        assert all(r.token_accuracy == expected for r in res.rows if r.mode == "teacher")
        assert all(r.token_accuracy is None for r in res.rows if r.mode == "greedy")
        assert res.mean_over_depths() == {(n, m): expected for n in LENGTHS for m in ("teacher", "greedy")}
        assert all((o.predicted == o.answer) == (not wrong) for o in res.samples)
        # per answer token: every one right, or (the oracle's wrong answers) none
        assert all(o.hits and set(o.hits) == {not wrong} for o in res.samples if o.mode == "teacher")


def test_one_wrong_token_fails_exact_match_but_counts_in_token_accuracy(filler, tok):
    s = make_sample("passkey", filler, tok, 256, 0.5, random.Random(0))
    bad = s.answer_ids[:-1] + [(s.answer_ids[-1] + 1) % VOCAB]
    model = OracleLM([SimpleNamespace(prompt_ids=s.prompt_ids, answer_ids=bad)]).eval()
    with torch.no_grad():
        teacher, greedy = (
            score_teacher(model, s, torch.device("cpu")),
            score_greedy(model, s, torch.device("cpu")),
        )
    k = len(s.answer_ids)
    assert not teacher.correct and teacher.token_accuracy == pytest.approx((k - 1) / k)
    assert not greedy.correct and greedy.predicted == bad


def test_teacher_and_greedy_agree_on_a_real_model(filler, tok):
    # Greedy decoding fails exactly where the teacher-forced argmax first differs, so on an fp32 model
    # the two must agree; this checks the KV-cache path of a real HF model against one full forward.
    model = tiny_model("llama", layers=2, hidden=64, heads=4, kv_heads=2, vocab=VOCAB).eval()
    widths = []
    model.register_forward_pre_hook(
        lambda _m, _a, kw: widths.append(kw["input_ids"].shape[1]), with_kwargs=True
    )
    with torch.no_grad():
        for s in _samples(filler, tok)[:3]:
            t, g = score_teacher(model, s, torch.device("cpu")), score_greedy(model, s, torch.device("cpu"))
            first_miss = next((i for i, (p, a) in enumerate(zip(t.predicted, s.answer_ids)) if p != a), None)
            assert t.correct == g.correct
            assert g.predicted[: (first_miss or 0) + 1] == t.predicted[: (first_miss or 0) + 1]
    assert widths.count(1) == 3 * 5  # greedy decoding fed one token at a time: the KV cache was used


def test_bad_arguments(filler, tok):
    model = OracleLM([])
    with pytest.raises(ValueError, match="use one or both of teacher, greedy"):
        evaluate_capability(model, tok, "multikey", filler, [256], [0.5], 1, modes=["beam"])
    with pytest.raises(ValueError, match="unknown; use one of"):
        evaluate_capability(model, tok, "haystack", filler, [256], [0.5], 1)


def _result() -> CapabilityResult:
    rows = [
        CapabilityRow("multikey", n, d, m, acc, 4, tok_acc if m == "teacher" else None)
        for n, base in ((512, 1.0), (1024, 0.5))
        for d, acc, tok_acc in ((0.0, base, 0.9), (0.5, base / 2, 0.8), (1.0, 0.25, 0.7))
        for m in ("teacher", "greedy")
    ]
    return CapabilityResult(rows)


def test_result_round_trips_and_summarises(tmp_path, filler, tok):
    res = _result()
    assert CapabilityResult.from_csv(res.to_csv(tmp_path / "r.csv")).rows == res.rows
    full = evaluate_capability(
        OracleLM(_samples(filler, tok)),
        tok,
        "multikey",
        filler,
        LENGTHS,
        DEPTHS,
        2,
        seed=3,
        n_keys=4,
        progress=False,
    )
    assert CapabilityResult.from_json(full.to_json(tmp_path / "r.json")) == full
    assert res.mean_over_depths()[(1024, "teacher")] == pytest.approx((0.5 + 0.25 + 0.25) / 3)
    table = res.format_table()
    assert "multikey (teacher, exact match)" in table and "multikey (greedy, exact match)" in table
    assert "    1024 |   0.50   0.25   0.25 |   0.33" in table


def test_heatmap_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    path = _result().plot_heatmap(tmp_path / "heat.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
