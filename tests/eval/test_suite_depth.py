"""SuiteConfig.depth_band: a family's evidence sits in a band of the context's depths (the v9 sizing rungs), the
other families' draws stay as they were, v8's rows are what they were before the knob, and the runner scores
near and far questions apart."""

from __future__ import annotations

import dataclasses
import random
from types import SimpleNamespace

import pytest
from tests.eval.conftest import chosen_as_preset, suite_digests

from lemo.config import SuiteConfig
from lemo.eval.suite import draw_facts, layout
from lemo.eval.suite_rows import eval_samples, training_row

# v8's rows and eval samples (as in test_suite_v8), made with the code of commit 0362d9a, before depth_band existed.
V8_DIGESTS = ("bd65b16e318a7589", "b4a0039c3632621a")


def test_v8_rows_and_samples_are_what_they_were_before_the_band(train_text, held_text, tok):
    assert suite_digests("v8", train_text, held_text, tok) == V8_DIGESTS


def test_a_band_rescales_its_familys_depths_and_moves_no_other():
    plain = draw_facts(random.Random(7), SuiteConfig.from_preset("v8"), "train")
    banded = draw_facts(random.Random(7), SuiteConfig.from_preset("v8", depth_band={"kv": [0.5, 1]}), "train")
    for a, b in zip(plain, banded, strict=True):
        assert a.statements == b.statements
        if a.family == "kv":
            assert b.depths == [0.5 + d / 2 for d in a.depths] and all(0.5 <= d <= 1 for d in b.depths)
        else:
            assert a.depths == b.depths


def test_banded_statements_sit_in_the_band_of_the_context(filler, tok):
    cfg = SuiteConfig.from_preset("v8", depth_band={"multivalue": [0.75, 1], "kv": [0.75, 1]})
    facts = draw_facts(random.Random(3), cfg, "eval")
    n = 6000
    lay = layout(filler, tok, 0, n, facts, 0, random.Random(1), cfg)
    total, first = len(lay.ids), 0
    for f in facts:
        groups = range(first, first + len(f.statements))
        first += len(f.statements)
        if f.family in cfg.depth_band:
            # a statement goes to the sentence start nearest its depth: a sentence or two of slack
            assert all(lay.groups[g][0][0] >= 0.75 * n - 200 for g in groups), f.family
            assert all(lay.groups[g][0][1] <= total for g in groups)


def test_banded_recall_quotes_start_in_the_band(held_text, tok):
    cfg = SuiteConfig.from_preset("v8", depth_band={"recall": [0.5, 1]}, families=("recall",))
    samples = eval_samples(held_text, tok, [4096], 4, cfg=cfg)
    assert all(s.actual_depth >= 0.45 for s in samples), [s.actual_depth for s in samples]
    free = eval_samples(held_text, tok, [4096], 4, cfg=SuiteConfig.from_preset("v8", families=("recall",)))
    assert any(s.actual_depth < 0.45 for s in free)  # without the band, quotes anywhere


@pytest.mark.parametrize("band", [{"kv": [1, 0.5]}, {"kvv": [0, 1]}, {"kv": 0.5}, {"kv": ["a", 1]}])
def test_a_bad_band_is_refused_with_the_fix(band):
    with pytest.raises(ValueError, match=r"depth_band .* 0 <= lo < hi <= 1"):
        SuiteConfig(depth_band=band)


def test_distance_rows_score_near_and_far_questions_apart(suite_mod):
    far = suite_mod.FAR_TOKENS
    sample = lambda length, pos: SimpleNamespace(prompt_ids=[0] * length, needle_pos=pos)
    outcome = lambda task, ok: SimpleNamespace(task=task, length=16384, correct=ok)
    samples = [sample(16000, 100), sample(16000, 15000), sample(16000, 15500), sample(16000, 16000 - far)]
    outcomes = [outcome("kv", True), outcome("kv", True), outcome("kv", False), outcome("count", True)]
    rows = {
        (r["family"], r["metric"]): (r["value"], r["n"]) for r in suite_mod.distance_rows(samples, outcomes)
    }
    assert rows == {
        ("kv", "exact_match_far"): (1.0, 1),
        ("kv", "exact_match_near"): (0.5, 2),
        ("count", "exact_match_near"): (1.0, 1),  # exactly FAR_TOKENS back is near
    }


def test_the_v9_rungs_band_every_family_deeper_each_rung(suite_mod):
    from pathlib import Path

    plan = suite_mod.sizing_plan(Path(suite_mod.__file__).parent / "suite_sizing_v9.json")
    assert [name for name, _, _ in plan] == ["A_v8", "B_half", "C_quarter"]
    assert sum(len(seeds) for _, _, seeds in plan) == 6  # one H100 holds 6 jobs at 16K
    a, b, c = (suite_mod.suite_config(SimpleNamespace(suite=suite)) for _, suite, _ in plan)
    assert a == SuiteConfig.from_preset("v8")
    assert set(b.depth_band) == set(c.depth_band) == set(a.families)
    assert {band for band in b.depth_band.values()} == {(0.5, 1.0)}
    assert {band for band in c.depth_band.values()} == {(0.75, 1.0)}
    assert dataclasses.replace(b, depth_band={}) == a == dataclasses.replace(c, depth_band={})


def test_v9_is_what_the_v9_sizing_run_chose():
    """The preset v9 names the knobs `sizing choose` wrote after the v9 sizing run (over v8), which the suite v9 run
    passed as JSON: the same rows as `--suite '{"preset": "v9"}'`."""
    chosen, named = chosen_as_preset("v9", over="v8")
    assert chosen == named
    assert set(SuiteConfig.from_preset("v9").depth_band) == {"count", "kv", "recall"}


def test_v10_is_what_the_v10_sizing_run_chose():
    """Preset v10 is v9 with key-value lookup holding out CSV, as `sizing choose` wrote after the v10 sizing run;
    the other rungs' multi-value digits were not taken (both scored below v9's 3 digits)."""
    chosen, named = chosen_as_preset("v10", over="v9")
    assert chosen == named
    v10, v9 = SuiteConfig.from_preset("v10"), SuiteConfig.from_preset("v9")
    assert v10.held_out == {"kv": 5, "vartrack": 5}
    assert dataclasses.replace(v10, held_out=v9.held_out, preset="v9") == v9


def test_v12_is_what_the_v12_sizing_run_chose():
    """Preset v12 is v10 with key-value blocks of 3 rows, all asked, as `sizing choose` wrote after the v12 sizing
    run (its first rung); the other rungs' extra blocks and multi-value keys were not taken."""
    chosen, named = chosen_as_preset("v12", over="v10")
    assert chosen == named
    v12, v10 = SuiteConfig.from_preset("v12"), SuiteConfig.from_preset("v10")
    assert (v12.kv_pairs, v12.kv_asked, v12.kv_blocks, v12.multivalue_keys) == (3, 3, 1, v10.multivalue_keys)
    assert dataclasses.replace(v12, kv_pairs=v10.kv_pairs, kv_asked=v10.kv_asked, preset="v10") == v10


def test_v14_is_what_the_120_step_sizing_run_chose():
    """Preset v14 is v12 with counting's "last" form and 2 multi-value keys in the last quarter, as `sizing choose`
    wrote after the 120-step run of suite_lengths_v14.json (the only run that sized all six families)."""
    chosen, named = chosen_as_preset("v14", over="v12")
    assert chosen == named
    v14, v12 = SuiteConfig.from_preset("v14"), SuiteConfig.from_preset("v12")
    assert (v14.count_form, v14.multivalue_keys, v14.depth_band["multivalue"]) == ("last", 2, (0.75, 1.0))
    assert {f: b for f, b in v14.depth_band.items() if f != "multivalue"} == v12.depth_band


def test_the_v10_rungs_differ_from_v9_in_key_value_format_and_multi_value_digits_only(suite_mod):
    from pathlib import Path

    plan = suite_mod.sizing_plan(Path(suite_mod.__file__).parent / "suite_sizing_v10.json")
    assert sum(len(seeds) for _, _, seeds in plan) == 8
    v9 = SuiteConfig.from_preset("v9")
    configs = {name: suite_mod.suite_config(SimpleNamespace(suite=suite)) for name, suite, _ in plan}
    rungs = [configs[n] for n in ("A_pydict", "B_csv", "C_calls")]
    assert [c.held_out["kv"] for c in rungs] == [1, 5, 6]
    assert [c.multivalue_digits for c in rungs] == [3, 2, 1]
    assert all(dataclasses.replace(c, held_out=v9.held_out, multivalue_digits=3) == v9 for c in rungs)
    # the diagnostic asks in the training wordings, on v9's knobs otherwise
    assert dataclasses.replace(configs["D_indist"], held_out_phrasing=True) == v9


def test_the_v11_rungs_change_only_multi_value_and_key_value_lookup(suite_mod):
    from pathlib import Path

    plan = suite_mod.sizing_plan(Path(suite_mod.__file__).parent / "suite_sizing_v11.json")
    assert sum(len(seeds) for _, _, seeds in plan) == 6
    v10 = SuiteConfig.from_preset("v10")
    configs = [suite_mod.suite_config(SimpleNamespace(suite=suite)) for _, suite, _ in plan]
    assert [(c.multivalue_digits, c.kv_value_len) for c in configs] == [(4, 3), (5, 4), (4, 3)]
    # C_more asks more of the two families in each training row, with A_long's values
    assert [(c.multivalue_keys, c.kv_blocks) for c in configs] == [(4, 1), (4, 1), (6, 2)]
    back = dict(multivalue_digits=3, kv_value_len=2, multivalue_keys=4, kv_blocks=1)
    assert all(dataclasses.replace(c, **back) == v10 for c in configs)


def test_the_v12_rungs_give_key_value_lookup_fewer_rows_a_block(suite_mod, filler, tok):
    """suite_sizing_v12.json: over v10, only the key-value blocks' rows and count (and multi-value's keys) move,
    and a 16K training row of the rung with the most blocks asks every pair of each."""
    from pathlib import Path

    plan = suite_mod.sizing_plan(Path(suite_mod.__file__).parent / "suite_sizing_v12.json")
    assert sum(len(seeds) for _, _, seeds in plan) == 6
    v10 = SuiteConfig.from_preset("v10")
    configs = [suite_mod.suite_config(SimpleNamespace(suite=suite)) for _, suite, _ in plan]
    assert [(c.kv_pairs, c.kv_asked, c.kv_blocks, c.multivalue_keys) for c in configs] == [
        (3, 3, 1, 4), (3, 3, 2, 6), (2, 2, 3, 6),
    ]  # fmt: skip
    back = dict(kv_pairs=6, kv_asked=4, kv_blocks=1, multivalue_keys=4)
    assert all(dataclasses.replace(c, **back) == v10 for c in configs)
    facts = draw_facts(random.Random("v12/0"), configs[2], "train")
    row = training_row(filler, tok, 16384, "v12/0", configs[2])
    kv = [q.text + q.answer for f in facts if f.family == "kv" for q in f.questions]
    assert len(kv) == 6 and all(q in row["completion"] for q in kv)


def test_c_more_asks_twice_the_key_value_pairs_and_six_multi_value_keys_in_a_16k_row(filler, tok):
    """C_more is the first sizing rung with more than one key-value block: a 16K training row takes all its
    facts and asks every one of them."""
    cfg = SuiteConfig.from_preset("v10", multivalue_digits=4, kv_value_len=3, multivalue_keys=6, kv_blocks=2)
    facts = draw_facts(random.Random("c_more/0"), cfg, "train")  # the row's facts: its seed's first draw
    asked = {f: sum(len(x.questions) for x in facts if x.family == f) for f in ("kv", "multivalue")}
    assert asked == {"kv": 2 * cfg.kv_asked, "multivalue": 6}
    row = training_row(filler, tok, 16384, "c_more/0", cfg)
    wanted = [q.text + q.answer for f in facts if f.family in asked for q in f.questions]
    assert all(w in row["completion"] for w in wanted)


def test_the_far_variant_of_v10_puts_multi_key_and_variable_tracking_evidence_over_8k_back(
    suite_mod, held_text, tok
):
    """benchmarks/quality/suite_v10_far.json: v10 with multi-key and variable tracking stated in the first 40% of
    the context, so at 16K every such question looks back further than SmolLM2's native 8K; the other bands are
    v10's."""
    import json
    from pathlib import Path

    knobs = json.loads((Path(suite_mod.__file__).parent / "suite_v10_far.json").read_text())
    far = suite_mod.suite_config(SimpleNamespace(suite=json.dumps(knobs)))
    v10 = SuiteConfig.from_preset("v10")
    assert {f: b for f, b in far.depth_band.items() if f not in ("multikey", "vartrack")} == v10.depth_band
    assert dataclasses.replace(far, depth_band=v10.depth_band) == v10
    samples = eval_samples(held_text * 3, tok, [16384], 2, cfg=far)
    back = [len(s.prompt_ids) - s.needle_pos for s in samples if s.task in ("multikey", "vartrack")]
    assert back and min(back) > 8192


def test_v10_asks_v9s_multi_key_questions_at_the_same_distances(held_text, tok):
    """capability.md compares far multi-key answers across v9 and v10 as the same questions: v10 changes only the
    key-value block's held-out format, so every multi-key sample keeps its answer and its distance."""
    samples = {
        p: eval_samples(held_text * 3, tok, [8192], 4, cfg=SuiteConfig.from_preset(p)) for p in ("v9", "v10")
    }
    mk = {
        p: [(s.answer, len(s.prompt_ids) - s.needle_pos) for s in got if s.task == "multikey"]
        for p, got in samples.items()
    }
    assert mk["v9"] and mk["v9"] == mk["v10"]
    kv = {p: [s.prompt for s in got if s.task == "kv"] for p, got in samples.items()}
    assert kv["v9"] != kv["v10"]  # the format did change


def test_the_v13_rungs_move_only_counting_to_its_max_form_and_a_16k_row_asks_every_name(
    suite_mod, filler, tok
):
    """suite_sizing_v13.json: over v12, only counting's form and its values a name move, and a 16K training row
    of the rung with the most values asks the largest of every counted name."""
    from pathlib import Path

    plan = suite_mod.sizing_plan(Path(suite_mod.__file__).parent / "suite_sizing_v13.json")
    assert sum(len(seeds) for _, _, seeds in plan) == 4
    v12 = SuiteConfig.from_preset("v12")
    configs = [suite_mod.suite_config(SimpleNamespace(suite=suite)) for _, suite, _ in plan]
    assert [(c.count_form, c.count_max) for c in configs] == [("max", 5), ("max", 3)]
    assert all(dataclasses.replace(c, count_form="count", count_max=3) == v12 for c in configs)
    facts = draw_facts(random.Random("v13/0"), configs[0], "train")
    row = training_row(filler, tok, 16384, "v13/0", configs[0])
    asked = [q.text + q.answer for f in facts if f.family == "count" for q in f.questions]
    assert len(asked) == v12.count_keys and all(q in row["completion"] for q in asked)


def test_the_v14_rungs_move_only_counting_and_c_multi_value_and_a_16k_row_asks_every_name(
    suite_mod, filler, tok
):
    """suite_sizing_v14.json: over v12, A and B move only counting's form, values, names and adjacency; C is A with
    2 multi-value keys in the last quarter, v12's other bands kept. A 16K training row of the scattered rung asks
    the latest value of every counted name."""
    from pathlib import Path

    plan = suite_mod.sizing_plan(Path(suite_mod.__file__).parent / "suite_sizing_v14.json")
    assert sum(len(seeds) for _, _, seeds in plan) == 6
    v12 = SuiteConfig.from_preset("v12")
    configs = [suite_mod.suite_config(SimpleNamespace(suite=suite)) for _, suite, _ in plan]
    assert [(c.count_form, c.count_max, c.count_keys, c.count_adjacent) for c in configs] == [
        ("last", 5, 5, False), ("last", 5, 5, True), ("last", 5, 5, False),
    ]  # fmt: skip
    back = dict(count_form="count", count_max=3, count_keys=9, count_adjacent=True)
    assert all(dataclasses.replace(c, **back) == v12 for c in configs[:2])
    c = configs[2]
    assert c.depth_band == {**v12.depth_band, "multivalue": (0.75, 1.0)} and c.multivalue_keys == 2
    assert dataclasses.replace(c, multivalue_keys=4, depth_band=v12.depth_band) == configs[0]
    facts = draw_facts(random.Random("v14/0"), configs[0], "train")
    row = training_row(filler, tok, 16384, "v14/0", configs[0])
    asked = [q.text + q.answer for f in facts if f.family == "count" for q in f.questions]
    assert len(asked) == 5 and all(q in row["completion"] for q in asked)
