"""lemo.eval.answer_kinds: the kinds of an answer's tokens and the accuracy per kind (finding a value against
copying it), which the suite's eval writes per family and the CPU probe prints."""

from __future__ import annotations

from types import SimpleNamespace

from lemo.eval.answer_kinds import first_errors, first_value, kind_accuracy, token_kinds, value_source


def test_kinds_of_a_multi_value_answer_as_smollm2_splits_it(tok):
    pieces = [tok.decode([t]) for t in tok.encode(" 858, 943", add_special_tokens=False)]
    assert pieces == [" ", "8", "5", "8", ",", " ", "9", "4", "3"]  # digits one a token, the space apart
    assert token_kinds(pieces) == [
        "space", "value_start", "value_rest", "value_rest", "separator",
        "space", "value_start", "value_rest", "value_rest",
    ]  # fmt: skip


def test_a_word_answer_starts_with_its_first_word():
    assert token_kinds([" The", " names"]) == ["value_start", "value_rest"]


def test_accuracy_per_kind_and_the_first_error():
    kinds = [["space", "value_start", "value_rest"], ["space", "value_start", "value_rest"]]
    hits = [[True, True, True], [True, False, True]]  # one exact, one wrong at its value's first character
    assert kind_accuracy(kinds, hits) == {"space": (1.0, 2), "value_start": (0.5, 2), "value_rest": (1.0, 2)}
    assert first_errors(kinds, hits) == {"value_start": 1}
    assert first_errors(kinds, [[True] * 3] * 2) == {}


def test_the_suite_writes_finding_and_copying_accuracy_per_family(suite_mod, tok):
    """suite.py's kind_rows: per family, the accuracy at values' first characters apart from their later ones."""
    answer = tok.encode(" 858, 943", add_special_tokens=False)  # space, 8 5 8, comma, space, 9 4 3
    sample = SimpleNamespace(answer_ids=answer)
    # one answer wrong at its second value's first digit only, one wrong at a later digit only
    first_miss = [True] * 6 + [False, True, True]
    later_miss = [True] * 3 + [False] + [True] * 5
    outcomes = [
        SimpleNamespace(task="multivalue", length=16384, hits=first_miss),
        SimpleNamespace(task="multivalue", length=16384, hits=later_miss),
    ]
    rows = {r["metric"]: (r["value"], r["n"]) for r in suite_mod.kind_rows([sample, sample], outcomes, tok)}
    assert rows == {"value_start_accuracy": (0.75, 4), "value_rest_accuracy": (7 / 8, 8)}


def test_first_value_of_an_answer():
    assert first_value(" 858, 943") == "858"
    assert first_value(" a3f") == "a3f"
    assert first_value(" , .") == ""


def test_where_a_generated_value_came_from():
    prompt = "id,value\nrose,412\nlark,907\nThe value of rose is"
    assert value_source(prompt, " 412", " 412\n") == "right"
    assert value_source(prompt, " 412", " 907") == "context"  # the other row's value: the wrong fact found
    assert value_source(prompt, " 412", " 41") == "invented"  # a prefix of a value is no value of the prompt
    assert value_source(prompt, " 412", " 555") == "invented"
    assert value_source(prompt, " 412", "\n\n") == "none"
    assert value_source(prompt, " 858, 943", " 858, 111") == "right"  # the first value decides
