"""lemo.eval.suite / suite_rows / suite_families: families x phrasings, held-out rules, lengths, evidence."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from lemo.config import SuiteConfig
from lemo.config.suite import FAMILIES
from lemo.eval import suite_families as fam
from lemo.eval.filler import Filler
from lemo.eval.names import in_eval_split, name_pool
from lemo.eval.suite_rows import FIT_SLACK, eval_sample, eval_samples, text_form, training_rows
from lemo.train.data.records import parse_record, tokenize_records

SEQ = 4096
TABLES = fam.PHRASINGS
TRAIN_MARKS = {  # text each training phrasing of multikey uses
    0: "The secret code of",
    1: "locker number",
    2: "holds ticket",
}


@pytest.fixture(scope="module")
def train_text(austen_dir) -> str:
    return (austen_dir / "prideprejudice.txt").read_text(encoding="utf-8")[:120_000]


@pytest.fixture(scope="module")
def rows(train_text, tok):
    return training_rows([train_text], tok, SEQ, 3, seed=0)


def test_every_family_has_three_train_phrasings_and_a_held_out_one(held_out_mark):
    assert set(TABLES) == {*FAMILIES, "count_max", "count_last"} and len(FAMILIES) >= 6  # count's value forms
    assert fam.EVAL_PHRASING not in fam.TRAIN_PHRASINGS and len(fam.TRAIN_PHRASINGS) >= 3
    for family, table in TABLES.items():
        assert len(table) == fam.N_PHRASINGS, family
        held = table[fam.EVAL_PHRASING]
        for p in fam.TRAIN_PHRASINGS:
            # The held-out phrasing rewords both the statement and the question.
            assert table[p][0] != held[0] and table[p][-2] != held[-2], (family, p)
        mark = held_out_mark[family]
        assert any(mark in part for part in held) and not any(
            mark in x for p in fam.TRAIN_PHRASINGS for x in table[p]
        )


def test_training_rows_mix_every_family_in_training_phrasings_only(rows, held_out_mark):
    for r in rows:
        assert r["families"] == sorted(FAMILIES)
        text = r["prompt"] + r["completion"]
        for family, mark in held_out_mark.items():
            assert mark not in text, (family, mark)
        assert r["completion"].count("\nQuestion: ") == r["completion"].count("\nAnswer: ") >= 6
    whole = "".join(r["prompt"] for r in rows)
    assert all(mark in whole for mark in TRAIN_MARKS.values())  # the training phrasings are mixed


def test_names_of_training_rows_and_eval_samples_come_from_disjoint_pools(rows, filler, tok):
    pattern = r"(?:secret code of|locker number belongs to|ticket does) (\w+)"
    train_names = {m for r in rows for m in re.findall(pattern, r["completion"])}
    assert len(train_names) >= 8 and not any(in_eval_split(n) for n in train_names)
    samples = eval_samples(filler_texts(filler, tok), tok, [2048], 4, families=["multikey", "count"])
    eval_names = {
        re.search(r"(?:badge of|trees) (\w+)", s.prompt.split("\nQuestion: ")[-1])[1] for s in samples
    }
    assert eval_names <= set(name_pool("eval")) and not eval_names & set(name_pool("train"))


def filler_texts(filler: Filler, tok) -> str:
    return tok.decode(filler.ids)


@pytest.mark.parametrize("length", [2048, 4096])
def test_eval_samples_have_the_exact_length_and_the_held_out_phrasing(length, filler, tok, held_out_mark):
    cfg = SuiteConfig()
    for i, family in enumerate(FAMILIES):
        s = eval_sample(family, filler, tok, length, f"t/{family}/{i}", cfg)
        assert s.length == len(s.prompt_ids) + len(s.answer_ids) == length, family
        assert s.answer_ids == tok.encode(s.answer, add_special_tokens=False)
        question = s.prompt.split("\nQuestion: ")[-1]
        assert held_out_mark[family] in question or held_out_mark[family] in s.prompt, family
        for mark in TRAIN_MARKS.values():
            assert mark not in s.prompt
        if family in ("multikey", "vartrack"):
            assert s.answer.strip() in s.prompt.split("\nQuestion: ")[0]  # the fact is in the context


def test_recall_answer_is_the_text_after_the_quoted_sentence(filler, tok):
    s = eval_sample("recall", filler, tok, 2048, "t/recall", SuiteConfig())
    quote = re.search(r'"(.+)"\?', s.prompt.split("\nQuestion: ")[-1])[1]
    context = " ".join(s.prompt.split("\nQuestion: ")[0].split())  # the novel's spacing, normalised
    assert context.count(quote) == 1
    after = context[context.index(quote) + len(quote) :]
    assert after.startswith(s.answer) and len(s.answer.split()) == SuiteConfig().recall_words


def test_training_rows_fill_the_length_in_both_forms_with_the_same_tokens(rows, tok):
    for r in rows:
        sup = tokenize_records([parse_record(r, "r")], tok)[0]
        text = tokenize_records([parse_record(text_form(r), "r")], tok)[0]
        assert SEQ - FIT_SLACK - 8 <= len(sup.input_ids) <= SEQ
        assert text_form(r)["text"] == r["prompt"] + r["completion"]
        assert abs(len(text.input_ids) - len(sup.input_ids)) <= 2  # the seam may merge a token
        n_prompt = len(tok.encode(r["prompt"], add_special_tokens=False))
        assert list(text.input_ids[: n_prompt - 1]) == list(sup.input_ids[: n_prompt - 1])
        assert text.labels is None and sum(x != -100 for x in sup.labels) > 100


def test_evidence_spans_cover_every_fact_and_answer(rows):
    for r in rows:
        prompt, spans = r["prompt"], r["evidence"]
        evidence = [prompt[s:e] for s, e in spans]
        assert all(s < e for s, e in spans) and spans == sorted(spans)
        # Every fact statement of the training phrasings lies inside a span.
        for m in re.finditer(
            r"The secret code of \w+ is \d{5}\.|Let [A-Z]{5} be \d{5}\.|\w+ rang the bell\.", prompt
        ):
            assert any(s <= m.start() and m.end() <= e for s, e in spans), m[0]
        # Every answer is in the evidence (recall answers with their spacing normalised).
        joined = " ".join(" ".join(x.split()) for x in evidence)
        for answer in re.findall(r"\nAnswer: [^\n]*", r["completion"]):
            for value in re.findall(r"\b\d{5}\b|\b[0-9a-f]{6}\b", answer):
                assert value in joined, value
        # The evidence is a small share of the row: an oracle that keeps it has a real choice left.
        assert sum(e - s for s, e in spans) < 0.25 * len(prompt)


def test_the_same_seed_gives_the_same_rows_and_another_seed_other_rows(train_text, tok, rows):
    again = training_rows([train_text], tok, SEQ, 1, seed=0, first=1)
    assert again[0] == rows[1]
    other = training_rows([train_text], tok, SEQ, 1, seed=1)
    assert other[0]["prompt"] != rows[0]["prompt"]


def test_suite_config_refuses_unknown_families_and_negative_counts():
    with pytest.raises(ValueError, match="families"):
        SuiteConfig(families=("multikey", "nope"))
    with pytest.raises(ValueError, match="knobs"):
        SuiteConfig(multikey_keys=-1)
    assert SuiteConfig(recall_quote_words=[5, 9]).recall_quote_words == (5, 9)  # from JSON


def test_v4_answers_start_with_the_token_the_numeric_answers_start_with(filler, tok):
    """Under one shared "Answer:" lead, a family whose answers start unlike the others' is scored on the format:
    in v3 a count (" three", one word token) never matched the bare space a trained model puts first, because
    every numeric answer starts with it (" 76638" is " " + digits). v4 counts in digits. Recall's answers are the
    novel's words, so they start with a word: its first token is the skill, not a format."""
    from lemo.config.suite import SuiteConfig

    firsts = {}
    for preset in ("v3", "v4"):
        cfg = SuiteConfig.from_preset(preset)
        samples = eval_samples(filler_texts(filler, tok), tok, [2048], 3, cfg=cfg)
        firsts[preset] = {f: {s.answer_ids[0] for s in samples if s.task == f} for f in cfg.families}
    numeric = firsts["v4"]["multikey"]
    assert len(numeric) == 1
    for family in ("multivalue", "vartrack", "kv", "count"):
        assert firsts["v4"][family] == numeric, family
    assert firsts["v3"]["count"].isdisjoint(numeric)  # the confound v4 removes


def _find(sub: list[int], seq: list[int]) -> int:
    return next((i for i in range(len(seq) - len(sub) + 1) if seq[i : i + len(sub)] == sub), -1)


def test_v5_recall_quotes_are_the_contexts_own_tokens_and_v4_quotes_were_not(filler, tok):
    """The novels wrap their lines and put two spaces after a full stop; a recall question quotes its sentence with
    single spaces. Before v5 the quote was therefore never the same tokens as the context (recall scored 0.00 for
    dense LoRA in every GPU run). v5 unwraps the filler and keeps only sites the model can copy: the quote (but
    its first word, which follows the question's opening quote mark) and the answer appear verbatim."""
    from lemo.eval.filler import encode

    texts = filler_texts(filler, tok)
    found = {}
    for preset in ("v4", "v5"):
        samples = eval_samples(
            texts, tok, [2048], 4, cfg=SuiteConfig.from_preset(preset), families=["recall"]
        )
        found[preset] = []
        for s in samples:
            quote = re.search(r'"(.+)"\?', s.prompt.split("\nQuestion: ")[-1])[1]
            tail = (
                encode(tok, " " + quote)[1:] + s.answer_ids
            )  # the quote after its first word, then the answer
            # Only the context can hold it: the question's quote is followed by '"?', not by the answer.
            found[preset].append(_find(tail, s.prompt_ids) >= 0)
    assert all(found["v5"]), found
    assert not any(found["v4"]), found


def test_unwrap_joins_wrapped_lines_and_keeps_paragraphs_apart():
    from lemo.eval.filler import unwrap

    text = "  It is a truth\nuniversally  acknowledged.  A single\nman.\n\n\n\nChapter 2\n \nMr. Bennet was\namong"
    assert (
        unwrap(text)
        == "It is a truth universally acknowledged. A single man.\n\nChapter 2\n\nMr. Bennet was among"
    )


def test_an_eval_sample_fits_where_a_recall_site_comes_and_goes_with_the_window(austen_dir, tok):
    """Found on the GPU at 6efe91d: under v6 this sample's fourth recall site sits at the window's end, so the
    window's length cycled between one with it (20 tokens over) and one without (20 under) and the sample was
    refused. A cycle now moves to another part of the novel."""
    held = (austen_dir / "persuasion.txt").read_text(encoding="utf-8")
    cfg = SuiteConfig.from_preset("v6")
    from lemo.eval.suite_rows import suite_filler

    s = eval_sample("recall", suite_filler(held, tok, cfg), tok, 16384, "suite/1/eval/recall/16384/3", cfg)
    assert s.length == len(s.prompt_ids) + len(s.answer_ids) == 16384


def test_v6_answer_line_echoes_the_quote_end_and_the_answer_continues_it_verbatim(filler, tok):
    """v6: the answer line ends with the quote's last words without the closing mark, and the answer opens with
    that mark; echo + answer is the context's own token run, so the answer is a continuation to copy."""
    from lemo.eval.filler import encode

    cfg = SuiteConfig.from_preset("v6")
    samples = eval_samples(filler_texts(filler, tok), tok, [2048], 4, cfg=cfg, families=["recall"])
    for s in samples:
        echo = s.prompt.split("\nAnswer: ... ")[-1]
        quote = re.search(r'"(.+)"\?', s.prompt.split("\nQuestion: ")[-1])[1]
        mark = re.search(r"[^\w]*$", quote)[0]  # the sentence's closing mark(s), e.g. "." or ")."
        assert mark and quote.endswith(echo + mark) and s.answer.startswith(mark + " ")
        assert len(echo.split()) == cfg.recall_echo
        tail = encode(tok, " " + echo)[1:] + s.answer_ids  # the echo after its first word, then the answer
        assert (
            _find(tail, s.prompt_ids[: -len(encode(tok, " " + echo))]) >= 0
        )  # in the context, not the question


def test_v7_is_what_the_v7_sizing_run_chose():
    """The preset v7 names the knobs `sizing choose` wrote after the v7 sizing run (over v6), so the suite v7 run's
    rows, made with those knobs, are what `--suite '{"preset": "v7"}'` makes."""
    chosen = json.loads(
        (Path(__file__).resolve().parents[2] / "benchmarks/results/suite_v7_sizing_chosen.json").read_text()
    )
    assert chosen.pop("preset") == "v6"
    v7 = dataclasses.asdict(SuiteConfig.from_preset("v7"))
    assert dataclasses.asdict(SuiteConfig.from_preset("v6", **chosen)) == {**v7, "preset": "v6"}
