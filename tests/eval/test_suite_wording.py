"""SuiteConfig's wording knobs (train_phrasings, shared_lead, held_out_phrasing): v1 and v2 unchanged, six
training phrasings that never include the held-out one, a bare "Answer:" that leaves the answers' tokens as
they were, and the held-out names and filler rules under the new knobs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from collections import defaultdict

import pytest

from lemo.config import SuiteConfig
from lemo.config.suite import FAMILIES
from lemo.eval import suite_families as fam
from lemo.eval.names import in_eval_split, name_pool
from lemo.eval.suite import draw_facts
from lemo.eval.suite_rows import eval_sample, eval_samples, training_rows

TABLES = fam.PHRASINGS
NAMES = {id(t): f for f, t in TABLES.items()}
# sha256 (first 16 hex digits) of the rows and eval samples below, computed with the code of commit 5690162,
# before the wording knobs existed: v1 and v2 must make exactly what they made then.
DIGESTS = {
    "v2": ("7bc22784bfb272e4", "c621a9f521923fd8"),
    "v1": ("f36f5984f5a46795", "da8bd69d44899334"),
}
SIX = dict(train_phrasings=6)
BOTH = dict(train_phrasings=6, shared_lead=True)


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def train_text(austen_dir) -> str:
    return (austen_dir / "prideprejudice.txt").read_text(encoding="utf-8")[:120_000]


@pytest.fixture
def picks(monkeypatch) -> dict[tuple[str, str], set[int]]:
    """(family, split) -> the phrasing indices `fam.phrase` handed out while the test ran."""
    seen: dict[tuple[str, str], set[int]] = defaultdict(set)
    phrase = fam.phrase

    def recording(table, rng, split, wording, family=""):
        row = phrase(table, rng, split, wording, family)
        full = [r[:-1] for r in table] if wording.shared_lead else list(table)
        seen[(NAMES[id(table)], split)].add(full.index(row[:-1] if wording.shared_lead else row))
        return row

    monkeypatch.setattr(fam, "phrase", recording)
    return seen


@pytest.mark.parametrize("preset", ["v2", "v1"])
def test_v1_and_v2_rows_and_eval_samples_are_unchanged(preset, train_text, held_text, tok):
    cfg = SuiteConfig.from_preset(preset)
    rows = training_rows([train_text], tok, 4096, 2, seed=0, cfg=cfg)
    samples = eval_samples(held_text, tok, [2048], 1, cfg=cfg)
    # "evidence_by_family" came later (the evidence split per family, of the same layout): the rest is as then.
    then = [{k: v for k, v in r.items() if k != "evidence_by_family"} for r in rows]
    assert (_digest(then), _digest([dataclasses.asdict(s) for s in samples])) == DIGESTS[preset]
    # Spelling the defaults out changes nothing either.
    same = SuiteConfig.from_preset(preset, train_phrasings=3, shared_lead=False, held_out_phrasing=True)
    assert training_rows([train_text], tok, 4096, 1, seed=0, cfg=same)[0] == rows[0]


def test_pick_phrasing_draws_training_phrasings_0_2_then_4_6_and_never_3():
    for n, want in [(1, {0}), (3, {0, 1, 2}), (6, {0, 1, 2, 4, 5, 6})]:
        rng = random.Random(n)
        assert {fam.pick_phrasing(rng, "train", n) for _ in range(300)} == want
    rng = random.Random(0)
    state = rng.getstate()
    assert fam.pick_phrasing(rng, "eval", 6) == fam.EVAL_PHRASING == 3
    assert rng.getstate() == state  # the held-out phrasing draws nothing: eval samples stay as they were
    assert {fam.pick_phrasing(rng, "eval", 3, held_out=False) for _ in range(100)} == {0, 1, 2}


def test_every_table_has_six_distinct_training_phrasings_and_the_held_out_one_at_3(held_out_mark):
    for family, table in TABLES.items():
        assert len(table) == fam.N_PHRASINGS == 7, family
        held, mark = table[fam.EVAL_PHRASING], held_out_mark[family]
        assert any(mark in part for part in held), family
        statements = [table[p][0] for p in fam.TRAIN_PHRASINGS]
        questions = [table[p][-2] for p in fam.TRAIN_PHRASINGS]
        assert len(set(statements)) == len(set(questions)) == 6, family  # genuinely different wordings
        for p in fam.TRAIN_PHRASINGS:
            assert table[p][0] != held[0] and table[p][-2] != held[-2], (family, p)
            assert not any(mark in part for part in table[p]), (family, p)


def test_six_phrasings_train_on_0_2_and_4_6_and_eval_stays_on_3(
    picks, train_text, held_text, tok, held_out_mark
):
    for seed in range(60):  # facts only: cheap, and every family draws many times
        draw_facts(random.Random(seed), SuiteConfig(**SIX), "train")
    rows = training_rows([train_text], tok, 4096, 3, seed=0, cfg=SuiteConfig(**SIX))  # recall too
    eval_samples(held_text, tok, [2048], 2, cfg=SuiteConfig(**SIX))
    for family in FAMILIES:
        want = {0, 1, 2, 4, 5, 6} if family != "recall" else None
        got = picks[(family, "train")]
        assert (got == want) if want else (got <= {0, 1, 2, 4, 5, 6} and got & {4, 5, 6}), (family, got)
        assert picks[(family, "eval")] == {3}, family
    for r in rows:
        for family, mark in held_out_mark.items():
            assert mark not in r["prompt"] + r["completion"], (family, mark)


def test_without_held_out_phrasing_eval_uses_the_training_phrasings(picks, held_text, tok, held_out_mark):
    samples = eval_samples(held_text, tok, [2048], 3, cfg=SuiteConfig(held_out_phrasing=False))
    assert all(picks[(f, "eval")] <= {0, 1, 2} for f in FAMILIES)
    assert set().union(*(picks[(f, "eval")] for f in FAMILIES)) == {0, 1, 2}
    assert not any(held_out_mark[s.task] in s.prompt for s in samples)


def _capitalised(text: str) -> set[str]:
    return set(re.findall(r"\b[A-Z][a-z]+\b", text))


def test_names_and_filler_stay_held_out_under_the_new_wording(train_text, held_text, tok):
    # The facts' questions (recall's quote the novel, whose own names are in neither pool's care).
    facts = [f for seed in range(4) for f in draw_facts(random.Random(seed), SuiteConfig(**BOTH), "train")]
    asked = "".join(q.text for f in facts for q in f.questions)
    train_pool, eval_pool = set(name_pool("train")), set(name_pool("eval"))
    assert len(_capitalised(asked) & train_pool) >= 20 and not _capitalised(asked) & eval_pool
    variables = set(re.findall(r"\b[A-Z]{5}\b", asked))
    assert variables and not any(in_eval_split(v) for v in variables)
    samples = eval_samples(held_text, tok, [2048], 2, cfg=SuiteConfig(**BOTH))
    questions = "".join(s.prompt.split("\nQuestion: ")[-1] for s in samples if s.task != "recall")
    assert _capitalised(questions) & eval_pool and not _capitalised(questions) & train_pool
    assert all(in_eval_split(v) for v in re.findall(r"\b[A-Z]{5}\b", questions))
    # Filler: 8-word runs of an eval context come from the held-out novel, never from the training one.
    held, train = " ".join(held_text.split()), " ".join(train_text.split())
    words = samples[0].prompt.split("\nQuestion: ")[0].split()
    runs = [" ".join(words[i : i + 8]) for i in range(0, len(words) - 8, 8)]
    assert sum(run in held for run in runs) > len(runs) // 2 and not any(run in train for run in runs)


def test_shared_lead_questions_end_at_answer_and_answers_tokenize_the_same(train_text, filler, tok):
    enc = lambda s: tok.encode(s, add_special_tokens=False)
    for seed in range(5):
        for split in ("train", "eval"):
            for f in draw_facts(random.Random(seed), SuiteConfig(**BOTH), split):
                for q in f.questions:
                    assert q.text.endswith("\nAnswer:") and q.answer.startswith(" "), q.text
                    whole, answer = enc(q.text + q.answer), enc(q.answer)
                    assert whole == enc(q.text) + answer, (q.text, q.answer)  # no token spans the seam
    rows = training_rows([train_text], tok, 4096, 2, seed=0, cfg=SuiteConfig(**BOTH))
    for r in rows:
        leads = re.findall(r"\nAnswer:([^\n]*)", r["completion"])
        assert len(leads) >= 6 and all(re.fullmatch(r" \S.*\.", x) for x in leads), leads
    for family in FAMILIES:
        plain = eval_sample(family, filler, tok, 2048, f"w/{family}", SuiteConfig())
        shared = eval_sample(family, filler, tok, 2048, f"w/{family}", SuiteConfig(**BOTH))
        assert shared.prompt.endswith("\nAnswer:") and shared.length == 2048, family
        # The same draws, so the same answer, with the same tokens as under the phrasing's own lead-in.
        assert shared.answer == plain.answer and shared.answer_ids == plain.answer_ids == enc(plain.answer)


def test_wording_knobs_are_checked():
    for bad in (0, 7, -1):
        with pytest.raises(ValueError, match="train_phrasings"):
            SuiteConfig(train_phrasings=bad)
    with pytest.raises(ValueError, match="train_phrasings"):
        SuiteConfig.from_preset("v1", train_phrasings=9)
    cfg = SuiteConfig.from_preset("v1", train_phrasings=6, shared_lead=True)
    assert fam.Wording.of(cfg) == fam.Wording(6, True, True)
