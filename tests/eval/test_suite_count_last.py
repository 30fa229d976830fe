"""The counting family's "last" form (SuiteConfig.count_form): each counted name gets 2..count_max distinct values,
each statement an update, and the answer is the value stated last in the row, whatever the statements' depths."""

from __future__ import annotations

import random
import re

import pytest

from lemo.config import SuiteConfig
from lemo.eval import suite_families as fam
from lemo.eval.filler import Filler
from lemo.eval.suite import draw_facts, layout

HELD_OUT_STATEMENT = "From then on, {k} wore the number {v}."  # count_last's phrasing 3


def _count_facts(split: str, seed: int, **knobs) -> list[fam.Fact]:
    cfg = SuiteConfig.from_preset("v12", **{"count_form": "last", **knobs})
    return [f for f in draw_facts(random.Random(seed), cfg, split) if f.family == "count"]


@pytest.mark.parametrize("adjacent", [True, False])
def test_the_answer_is_the_value_stated_last_in_the_row(filler: Filler, tok, adjacent):
    """Laid out in a row, a name's last statement in the text carries the answer, scattered or back to back."""
    cfg = SuiteConfig.from_preset("v12", count_form="last", count_adjacent=adjacent)
    checked = 0
    for seed in range(3):
        facts = draw_facts(random.Random(seed), cfg, "eval")
        context = tok.decode(layout(filler, tok, 0, 6000, facts, 0, random.Random(seed), cfg).ids)
        for f in facts:
            if f.family != "count":
                continue
            (q,) = f.questions
            where = [context.index(s) for s in f.statements]
            assert where == sorted(where)  # the statements appear in the order listed
            last = re.search(r"\d+", f.statements[-1])[0]  # a name has no digits
            assert q.answer == f" {last}" and q.evidence == list(range(len(f.statements)))
            checked += 1
    assert checked == 3 * cfg.count_keys


@pytest.mark.parametrize("form", ["max", "last"])
def test_either_value_form_states_distinct_values_and_never_one_alone(form):
    sizes = set()
    for seed in range(6):
        for f in _count_facts("train", seed, count_max=3, count_form=form):
            values = [int(re.search(r"\d+", s)[0]) for s in f.statements]
            assert len(set(values)) == len(values) and all(10 <= v <= 99 for v in values)
            sizes.add(len(values))
    assert sizes == {2, 3}  # one value would be a lookup, not a comparison or a choice among updates


def test_eval_holds_out_its_wording_and_training_never_uses_it():
    held = HELD_OUT_STATEMENT.split("{k}")[1].split("{v}")[0]  # " wore the number "
    train = [s for seed in range(8) for f in _count_facts("train", seed) for s in f.statements]
    evals = [s for seed in range(4) for f in _count_facts("eval", seed) for s in f.statements]
    assert evals and all(held in s for s in evals)
    assert train and not any(held in s for s in train)


def test_the_last_form_refuses_bad_input_with_the_fix():
    with pytest.raises(
        ValueError, match=re.escape("count_form 'last' compares 2..count_max values: set count_max >= 2")
    ):
        SuiteConfig(count_form="last", count_max=1)
    with pytest.raises(ValueError, match="count_form 'last' draws distinct 2-digit values"):
        SuiteConfig(count_form="last", count_keys=21, count_max=3)
