"""benchmarks/quality/answer_errors_probe.py: its CSV row's scores (the kinds themselves: test_answer_kinds.py)."""

from __future__ import annotations

import json

import pytest
from tests.eval.conftest import QUALITY, load_script


@pytest.fixture(scope="module")
def probe():
    yield from load_script(QUALITY / "answer_errors_probe.py")


def test_score_counts_each_kind_and_where_answers_first_go_wrong(probe):
    kinds = [["space", "value_start", "value_rest"], ["space", "value_start", "value_rest"]]
    right = [[True, True, True], [True, False, True]]  # one exact, one wrong at its value's first character
    got = probe.score(kinds, right)
    assert got["exact_match"] == 0.5 and got["token_accuracy"] == round((1 + 2 / 3) / 2, 4)
    assert (got["acc_value_start"], got["n_value_start"]) == (0.5, 2)
    assert (got["acc_value_rest"], got["acc_space"]) == (1.0, 1.0)
    assert got["acc_separator"] == "" and got["n_separator"] == 0  # no such token: no accuracy, not 0
    assert json.loads(got["first_error"]) == {"value_start": 1}


@pytest.mark.parametrize("suite", ["{not json", '{"no_such_knob": 1}', '{"preset": "no-such-preset"}', "[1]"])
def test_a_bad_suite_is_refused_with_the_fix(probe, suite, tmp_path):
    with pytest.raises(SystemExit, match="pass a JSON object of SuiteConfig knobs"):
        probe.main(["--suite", suite, "--out", str(tmp_path / "x.csv")])
    assert not (tmp_path / "x.csv").exists()


def test_sources_say_where_each_greedy_answer_came_from(probe):
    from types import SimpleNamespace as NS

    prompt = "rose,412\nlark,907\nThe value of rose is"
    samples = [NS(prompt=prompt, answer=" 412")] * 4
    greedy = [NS(predicted=p, correct=p == " 412") for p in (" 412", " 907", " 555", " 907")]
    got = probe.sources(samples, greedy)
    assert got["greedy_exact_match"] == 0.25
    counts = [got[f"source_{k}"] for k in ("right", "context", "invented", "none")]
    assert counts == [1, 2, 1, 0]
    assert json.loads(got["greedy_values"]) == {"907": 2, "412": 1, "555": 1}  # most generated first
