"""The counting family's "max" form (SuiteConfig.count_form): each counted name gets 2..count_max distinct values,
the answer is the largest, every statement is its evidence, and eval holds out its own wording."""

from __future__ import annotations

import random
import re

import pytest

from lemo.config import SuiteConfig
from lemo.eval import suite_families as fam
from lemo.eval.filler import Filler
from lemo.eval.suite import draw_facts, layout

HELD_OUT_STATEMENT = "{k} ran {v} laps on one day."  # count_max's phrasing 3


def _count_facts(split: str, seed: int, **knobs) -> list[fam.Fact]:
    cfg = SuiteConfig.from_preset("v12", count_form="max", **knobs)
    return [f for f in draw_facts(random.Random(seed), cfg, split) if f.family == "count"]


@pytest.mark.parametrize("split", ["train", "eval"])
def test_the_answer_is_the_largest_of_the_names_values(split):
    """(Distinct values, 2..count_max of them: test_suite_count_last.py, for both value forms.)"""
    for seed in range(6):
        for f in _count_facts(split, seed, count_max=3):
            values = [int(re.search(r"\d+", s)[0]) for s in f.statements]  # a name has no digits
            (q,) = f.questions
            assert q.answer == f" {max(values)}"
            assert q.evidence == list(range(len(values)))  # the largest is known only against every value


def test_eval_holds_out_its_wording_and_training_never_uses_it():
    held = HELD_OUT_STATEMENT.split("{k}")[1].split("{v}")[1]  # " laps on one day."
    train = [s for seed in range(8) for f in _count_facts("train", seed) for s in f.statements]
    evals = [s for seed in range(4) for f in _count_facts("eval", seed) for s in f.statements]
    assert evals and all(s.endswith(held) for s in evals)
    assert train and not any(s.endswith(held) for s in train)


def test_the_statements_and_the_answer_are_in_the_context(filler: Filler, tok):
    cfg = SuiteConfig.from_preset("v12", count_form="max")
    facts = draw_facts(random.Random(2), cfg, "eval")
    lay = layout(filler, tok, 0, 6000, facts, 0, random.Random(1), cfg)
    context = tok.decode(lay.ids)
    for f in facts:
        if f.family == "count":
            assert all(s in context for s in f.statements)
            assert f"{f.questions[0].answer.strip()} laps" in context


def test_count_form_refuses_bad_input_with_the_fix():
    with pytest.raises(ValueError, match="count_form 'total': use one of count, max"):
        SuiteConfig(count_form="total")
    with pytest.raises(ValueError, match="set count_max >= 2"):
        SuiteConfig(count_form="max", count_max=1)
    with pytest.raises(ValueError, match="count_keys \\* count_max <= 60"):
        SuiteConfig(count_form="max", count_keys=21, count_max=3)  # 63 values: the row would run out
