"""benchmarks/quality/answer_errors_probe.py: the answer-token kinds and the scores per kind (the CPU probe that
tells a family whose values are not found from one whose values are not copied)."""

from __future__ import annotations

import json

import pytest
from tests.eval.conftest import QUALITY, load_script


@pytest.fixture(scope="module")
def probe():
    yield from load_script(QUALITY / "answer_errors_probe.py")


def test_kinds_of_a_multi_value_answer_as_smollm2_splits_it(probe, tok):
    pieces = [tok.decode([t]) for t in tok.encode(" 858, 943", add_special_tokens=False)]
    assert pieces == [" ", "8", "5", "8", ",", " ", "9", "4", "3"]  # digits one a token, the space apart
    assert probe.token_kinds(pieces) == [
        "space", "value_start", "value_rest", "value_rest", "separator",
        "space", "value_start", "value_rest", "value_rest",
    ]  # fmt: skip


def test_a_word_answer_starts_with_its_first_word(probe):
    assert probe.token_kinds([" The", " names"]) == ["value_start", "value_rest"]


def test_score_counts_each_kind_and_where_answers_first_go_wrong(probe):
    kinds = [["space", "value_start", "value_rest"], ["space", "value_start", "value_rest"]]
    right = [[True, True, True], [True, False, True]]  # one exact, one wrong at its value's first character
    got = probe.score(kinds, right)
    assert got["exact_match"] == 0.5 and got["token_accuracy"] == round((1 + 2 / 3) / 2, 4)
    assert (got["acc_value_start"], got["n_value_start"]) == (0.5, 2)
    assert (got["acc_value_rest"], got["acc_space"]) == (1.0, 1.0)
    assert got["acc_separator"] == "" and got["n_separator"] == 0  # no such token: no accuracy, not 0
    assert json.loads(got["first_error"]) == {"value_start": 1}
