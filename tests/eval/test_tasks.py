"""lemo.eval.tasks / names / filler: exact spans, exact lengths, depths, seeds, held-out pools."""

from __future__ import annotations

import random
import re

import pytest

from lemo.eval.filler import Filler, encode
from lemo.eval.names import name_pool, sample_names, sample_variables
from lemo.eval.tasks import TASKS, make_sample, make_samples, training_records

LEAD_IN = {
    "single": "Answer: The secret code of {key} is",
    "multikey": "Answer: The secret code of {key} is",
    "multivalue": "Answer: The secret codes of {key} are",
    "vartrack": "Answer: The value of VAR {key} is",
    "passkey": "Answer: The pass key is",
}


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("depth", [0.0, 0.3, 1.0])
def test_sample_has_exact_answer_span_needle_and_depth(task, depth, filler, tok):
    s = make_sample(task, filler, tok, 1024, depth, random.Random(7), n_keys=8, n_chains=2)
    assert s.length == len(s.prompt_ids) + len(s.answer_ids) == 1024
    assert s.answer_ids == tok.encode(s.answer, add_special_tokens=False)
    assert tok.decode(s.answer_ids) == s.answer and re.fullmatch(r" \d{5}(, \d{5})*", s.answer)
    # The queried needle sits at needle_pos in the ids and, as text, in the prompt.
    needle_ids = encode(tok, " " + s.needle)
    assert s.prompt_ids[s.needle_pos : s.needle_pos + len(needle_ids)] == needle_ids
    assert " " + s.needle in s.prompt and tok.decode(s.prompt_ids) == s.prompt  # SmolLM2: no BOS
    assert s.prompt.endswith(LEAD_IN[task].format(key=s.key))
    assert s.depth == depth and abs(s.actual_depth - depth) <= 0.07  # snap reach: 64 tokens of 1024
    if task != "multivalue":
        assert s.answer.strip() in s.needle


def test_multikey_has_distinct_keys_and_one_answer(filler, tok):
    s = make_sample("multikey", filler, tok, 2048, 0.5, random.Random(1), n_keys=12)
    facts = dict(re.findall(r"The secret code of (\w+) is (\d{5})\.", s.prompt))
    assert len(facts) == 12 and facts[s.key] == s.answer.strip()
    assert len(set(facts.values())) == 12  # codes are distinct too


def test_multivalue_lists_every_code_in_order_of_appearance(filler, tok):
    for seed in range(5):
        s = make_sample("multivalue", filler, tok, 1024, 0.6, random.Random(seed), n_values=5)
        codes = re.findall(rf"One of the secret codes of {s.key} is (\d{{5}})\.", s.prompt)
        assert len(codes) == 5 and s.answer == " " + ", ".join(codes)


def test_vartrack_chain_resolves_to_the_answer(filler, tok):
    s = make_sample("vartrack", filler, tok, 1024, 0.4, random.Random(3), n_hops=4, n_chains=3)
    links = dict(re.findall(r"VAR ([A-Z]{5}) = VAR ([A-Z]{5})\.", s.prompt))
    values = dict(re.findall(r"VAR ([A-Z]{5}) = (\d{5})\.", s.prompt))
    assert len(links) == 3 * 4 and len(values) == 3
    var = s.key
    while var in links:
        var = links[var]
    assert values[var] == s.answer.strip() and s.needle == f"VAR {var} = {values[var]}."


@pytest.mark.parametrize("length", [200, 777, 2048, 20_000])  # 20K > the filler: it wraps around
def test_lengths_are_exact_and_never_above(length, filler, tok):
    for task in TASKS:
        for depth in (0.0, 0.5, 1.0):
            s = make_sample(task, filler, tok, length, depth, random.Random(0), n_keys=4)
            assert s.length == length


def test_samples_are_reproducible_by_seed(filler, tok):
    a = make_samples("multikey", filler, tok, [512], [0.2, 0.8], 2, seed=5, n_keys=4)
    b = make_samples("multikey", filler, tok, [512], [0.2, 0.8], 2, seed=5, n_keys=4)
    c = make_samples("multikey", filler, tok, [512], [0.2, 0.8], 2, seed=6, n_keys=4)
    assert a == b and a != c and len(a) == 4
    # A cell's samples do not depend on the other cells of the run.
    only = make_samples("multikey", filler, tok, [512], [0.8], 2, seed=5, n_keys=4)
    assert only == a[2:]


def test_name_pools_are_disjoint_and_eval_samples_use_the_eval_pool(filler, tok):
    train, held = set(name_pool("train")), set(name_pool("eval"))
    assert not train & held and len(train) >= 200 and len(held) >= 100
    rng = random.Random(0)
    many = sample_names(rng, 1000, "eval")  # beyond the first-name pool: "First Last"
    assert len(set(many)) == 1000 and all(n.split()[0] in held for n in many)
    assert not set(sample_variables(rng, 300, "train")) & set(sample_variables(rng, 300, "eval"))
    for seed in range(10):
        s = make_sample("multikey", filler, tok, 1024, 0.5, random.Random(seed), n_keys=8)
        assert set(re.findall(r"The secret code of (\w+) is", s.prompt)) <= held


def test_bad_requests_name_the_fix(filler, tok):
    with pytest.raises(ValueError, match=r"too short for multikey.*fewer keys"):
        make_sample("multikey", filler, tok, 100, 0.5, random.Random(0), n_keys=16)
    with pytest.raises(ValueError, match="unknown; use one of single, multikey"):
        make_sample("needle", filler, tok, 1024, 0.5, random.Random(0))
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        make_sample("single", filler, tok, 1024, 1.5, random.Random(0))
    with pytest.raises(ValueError, match="filler text is empty"):
        Filler.from_texts("", tok)


def test_filler_needles_go_at_sentence_starts(filler, tok):
    for seed in range(5):
        s = make_sample("single", filler, tok, 4096, 0.5, random.Random(seed))
        before = tok.decode(s.prompt_ids[: s.needle_pos]).rstrip()
        assert before[-1] in ".!?\"'", before[-40:]


def test_training_records_fit_the_row_and_ask_every_fact(austen_dir, tok):
    texts = [(austen_dir / f"{n}.txt").read_text()[:30_000] for n in ("emma", "mansfieldpark")]
    rows = training_records("multikey", texts, tok, seq_len=2048, n_rows=4, keys_per_row=8, seed=1)
    assert rows == training_records("multikey", texts, tok, seq_len=2048, n_rows=4, keys_per_row=8, seed=1)
    train_pool, spreads, shuffled = set(name_pool("train")), [], False
    for r in rows:
        assert set(r) == {"prompt", "completion"}
        n = len(encode(tok, r["prompt"])) + len(encode(tok, r["completion"]))
        assert 0.99 * 2048 <= n + 1 <= 2048  # + the EOS a trainer appends
        assert len(encode(tok, r["prompt"] + r["completion"])) + 1 <= 2048
        facts = re.findall(r"The secret code of (\w+) is (\d{5})\.", r["prompt"])
        asked = re.findall(
            r"\nQuestion: What is the secret code of (\w+)\?\nAnswer: The secret code of \1 is (\d{5})\.",
            r["completion"],
        )
        assert len(facts) == 8 and sorted(facts) == sorted(asked) and r["completion"].count("Question") == 8
        assert {name for name, _ in facts} <= train_pool
        shuffled |= [f[0] for f in facts] != [a[0] for a in asked]
        where = [r["prompt"].index(f"secret code of {name} ") / len(r["prompt"]) for name, _ in facts]
        spreads.append(max(where) - min(where))
    assert shuffled and min(spreads) > 0.4  # facts are spread over the context, asked in another order


@pytest.mark.parametrize("task", ["single", "multivalue", "vartrack", "passkey"])
def test_training_records_of_other_tasks(task, held_text, tok):
    rows = training_records(task, [held_text], tok, seq_len=1024, n_rows=2, keys_per_row=3, seed=0)
    questions = 1 if task in ("single", "passkey") else 3
    for r in rows:
        assert r["completion"].count("\nQuestion: ") == questions and r["completion"].endswith(".")
        assert len(encode(tok, r["prompt"])) + len(encode(tok, r["completion"])) + 1 <= 1024


def test_training_records_refuse_too_many_keys(held_text, tok):
    with pytest.raises(ValueError, match=r"too short for 64 keys of multikey.*use --keys \d+ or fewer"):
        training_records("multikey", [held_text], tok, seq_len=1024, n_rows=1, keys_per_row=64)
