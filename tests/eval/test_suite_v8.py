"""Suite v8's easier forms (SuiteConfig.held_out, multivalue_adjacent, count_adjacent): a family can hold out
another phrasing and then trains on phrasing 3 in its place, and a fact's statements can sit back to back; with
the knobs off the rows are those of v7."""

from __future__ import annotations

import itertools
import random

import pytest
from tests.eval.conftest import chosen_as_preset, suite_digests

from lemo.config import SuiteConfig
from lemo.eval import suite_families as fam
from lemo.eval.filler import Filler
from lemo.eval.suite import draw_facts, layout
from lemo.eval.suite_rows import eval_samples, training_rows

REGISTER = 5  # vartrack's "The register A now contains V." (name first)
YAML = 4  # kv's "K: V" lines


def test_a_family_holding_out_another_phrasing_trains_on_3_in_its_place():
    assert fam.train_phrasings() == fam.TRAIN_PHRASINGS
    assert fam.train_phrasings(REGISTER) == (0, 1, 2, 4, 3, 6)
    rng = random.Random(0)
    got = {fam.pick_phrasing(rng, "train", 6, eval_phrasing=REGISTER) for _ in range(300)}
    assert got == {0, 1, 2, 3, 4, 6}
    assert fam.pick_phrasing(rng, "eval", 6, eval_phrasing=REGISTER) == REGISTER


def test_held_out_moves_eval_samples_of_that_family_only(train_text, held_text, tok):
    cfg = SuiteConfig.from_preset("v7", held_out={"vartrack": REGISTER, "kv": YAML})
    samples = eval_samples(held_text, tok, [2048], 2, cfg=cfg)
    question = {s.task.split(":")[-1]: s.prompt.rsplit("Question:", 1)[1] for s in samples}
    assert question["vartrack"].startswith(" What does register")
    assert question["kv"].startswith(" What does the YAML document map")
    assert question["multikey"].startswith(" What does the badge of")  # the others still hold out phrasing 3
    context = samples[0].prompt  # every sample's context states every family's facts in the eval wording
    assert "The register" in context and "Assign " not in context and "<entries>" not in context
    rows = training_rows([train_text], tok, 4096, 4, seed=0, cfg=cfg)
    text = " ".join(r["prompt"] for r in rows)
    assert "The register" not in text and "What does the YAML document map" not in text
    assert "Assign " in text or "<entries>" in text  # phrasing 3 is now trained on


def test_held_out_refuses_an_unknown_family_or_phrasing():
    with pytest.raises(ValueError, match="held_out"):
        SuiteConfig(held_out={"vartrak": 5})
    with pytest.raises(ValueError, match="held_out"):
        SuiteConfig(held_out={"kv": 7})


@pytest.mark.parametrize("family,knob", [("count", "count_adjacent"), ("multivalue", "multivalue_adjacent")])
def test_adjacent_statements_sit_back_to_back_in_order(family, knob, filler: Filler, tok):
    cfg = SuiteConfig.from_preset("v7", **{knob: True})
    facts = draw_facts(random.Random(3), cfg, "eval")
    lay = layout(filler, tok, 0, 6000, facts, 0, random.Random(1), cfg)
    first = 0
    for f in facts:
        groups = range(first, first + len(f.statements))
        first += len(f.statements)
        if f.family != family:
            continue
        assert len(set(f.depths)) == 1
        spans = [lay.groups[g][0] for g in groups]
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans)), spans  # no filler between them
        if family == "multivalue":  # the answer lists the values in the order they are stated
            values = f.questions[0].answer.strip().split(", ")
            stated = [tok.decode(lay.ids[a:b]) for a, b in spans]
            assert all(v in s for v, s in zip(values, stated, strict=True))


# sha256 (first 16 hex digits) of v7's rows and eval samples below, made with the code of commit b96e175, before
# v8's knobs existed: with them off, v7 (and every measured preset) must make exactly what it made then.
V7_DIGESTS = ("a1f7a202fbd7d342", "60de6b6c6a86c5b6")


def test_v7_rows_and_samples_are_what_they_were_before_v8s_knobs(train_text, held_text, tok):
    assert suite_digests("v7", train_text, held_text, tok) == V7_DIGESTS
    on = draw_facts(random.Random(5), SuiteConfig.from_preset("v7", count_adjacent=True), "train")
    assert any(len(set(f.depths)) == 1 < len(f.depths) for f in on if f.family == "count")


def test_v8_is_what_the_v8_sizing_run_chose():
    """The preset v8 names the knobs `sizing choose` wrote after the v8 sizing run (over v7), which the suite v8 run
    passed as JSON: the same rows as `--suite '{"preset": "v8"}'`."""
    chosen, named = chosen_as_preset("v8", over="v7")
    assert chosen == named
    a, b = SuiteConfig.from_preset("v8"), SuiteConfig.from_preset("v8")
    a.held_out["count"] = 0  # a config's dict knob is its own, not the preset's
    assert b.held_out == {"kv": 4, "vartrack": 5} == SuiteConfig.from_preset("v8").held_out
