"""The sizing call's pieces (`gpu_capability.sh sizing`): benchmarks/quality/suite_sizing.json parses into valid
SuiteConfigs over v2 with 12 jobs in all, a bad variant is refused before any work, and the table printer."""

from __future__ import annotations

import csv
import dataclasses
import json
from argparse import Namespace
from pathlib import Path

import pytest

from lemo.config import SuiteConfig
from lemo.config.suite import FAMILIES
from lemo.eval.suite_summary import SUMMARY_FIELDS

QUALITY = Path(__file__).resolve().parents[2] / "benchmarks" / "quality"
SIZING = QUALITY / "suite_sizing.json"


def test_the_committed_variants_are_valid_suite_configs_and_12_jobs(suite_mod):
    plan = suite_mod.sizing_plan(SIZING)
    names = [name for name, _, _ in plan]
    assert len(set(names)) == len(names) >= 6 and names == sorted(names)  # the table lists them in order
    assert sum(len(seeds) for _, _, seeds in plan) == 12  # one H200 call, all jobs at once
    configs = {name: SuiteConfig.from_preset("v2", **json.loads(suite)) for name, suite, _ in plan}
    assert configs["A_v2"] == SuiteConfig()  # the anchor is v2 itself
    assert configs["D_both"].train_phrasings == 6 and configs["D_both"].shared_lead
    # The runner reads the same JSON through --suite.
    for name, suite, _ in plan:
        assert suite_mod.suite_config(Namespace(suite=suite)) == configs[name]


@pytest.mark.parametrize(
    "variant, message",
    [
        ({"train_phrasings": 7}, "train_phrasings"),
        ({"train_phrasings": 0}, "train_phrasings"),
        ({"no_such_knob": 1}, "no_such_knob"),
        ({"seeds": []}, "seeds"),
        ({"seeds": [0, -1]}, "seeds"),
        ({"preset": "no-such-preset"}, "no-such-preset"),
    ],
)
def test_a_bad_variant_is_refused_with_its_name_and_knob(suite_mod, tmp_path, variant, message):
    path = tmp_path / "sizing.json"
    path.write_text(json.dumps({"_note": "ignored", "good": {}, "bad": variant}))
    with pytest.raises(SystemExit, match=rf"(?s)'bad'.*{message}"):
        suite_mod.sizing_plan(path)


@pytest.mark.parametrize("content", [{"a b": {}}, {"x": [1]}, {"_only": "notes"}])
def test_a_bad_name_entry_or_an_empty_file_is_refused(suite_mod, tmp_path, content):
    path = tmp_path / "sizing.json"
    path.write_text(json.dumps(content))
    with pytest.raises(SystemExit):
        suite_mod.sizing_plan(path)


def test_plan_prints_one_tab_separated_line_per_variant(suite_mod, capsys):
    assert suite_mod.sizing_main(["plan", str(SIZING)]) == 0
    lines = capsys.readouterr().out.splitlines()
    plan = suite_mod.sizing_plan(SIZING)
    assert [line.split("\t") for line in lines] == [[n, s, " ".join(map(str, seeds))] for n, s, seeds in plan]


def _summary(path: Path, values: dict[str, tuple[float, float]], seeds: int = 2) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS)
        w.writeheader()
        for family, (mean, se) in values.items():
            for metric in ("exact_match", "token_accuracy"):
                w.writerow(
                    dict(config="dense", form="sup", metric=metric, family=family, eval_len=16384,
                         mean=mean, se=se, seeds=seeds)
                )  # fmt: skip


def _rungs(folder: Path, scores: dict[str, dict[str, float]]) -> None:
    """One summary per rung: dense LoRA's exact match (and token accuracy) per family, SE 0.01."""
    for name, values in scores.items():
        _summary(folder / f"{name}_summary.csv", {k: (v, 0.01) for k, v in values.items()})


def test_the_table_has_a_line_per_variant_and_a_column_per_family(suite_mod, tmp_path, capsys):
    _summary(tmp_path / "A_v2_summary.csv", {f: (0.8, 0.02) for f in [*FAMILIES, "suite"]})
    _summary(tmp_path / "B_x_summary.csv", {"multikey": (0.5, float("nan"))}, seeds=1)
    table = suite_mod.sizing_table(
        {
            "A_v2": tmp_path / "A_v2_summary.csv",
            "B_x": tmp_path / "B_x_summary.csv",
            "C": tmp_path / "none.csv",
        },
        16384,
        "exact_match",
    )
    lines = table.splitlines()
    assert lines[0] == "exact_match @ 16384" and lines[1].split() == ["variant", "seeds", *FAMILIES, "suite"]
    assert lines[2].split() == ["A_v2", "2", *["0.80±.02"] * 7]
    assert lines[3].split() == ["B_x", "1", "0.50", *["-"] * 6]  # one seed: no error; missing: "-"
    assert lines[4].split() == ["C", "-", *["-"] * 7]  # failed or out of time
    assert suite_mod.sizing_main(["table", str(tmp_path), "--lengths", "16384"]) == 0
    out = capsys.readouterr().out
    assert "exact_match @ 16384" in out and "token_accuracy @ 16384" in out and "A_v2" in out


def test_choose_takes_per_family_the_hardest_rung_dense_lands_in_range(suite_mod, tmp_path, capsys):
    """D too hard for kv and count, E right for kv, only F for count; multikey saturates everywhere (D kept)."""
    d = {"multikey": 0.95, "multivalue": 0.5, "vartrack": 0.1, "kv": 0.1, "recall": 0.6, "count": 0.0}
    e = {"multikey": 0.97, "multivalue": 0.7, "vartrack": 0.2, "kv": 0.55, "recall": 0.8, "count": 0.2}
    f = {"multikey": 0.97, "multivalue": 0.8, "vartrack": 0.3, "kv": 0.8, "recall": 0.9, "count": 0.45}
    _rungs(tmp_path, {"D_both": d, "E_easy": e, "F_easiest": f})
    knobs, chosen = suite_mod.choose_knobs(tmp_path, SIZING)
    assert chosen == {"multikey": "D_both", "multivalue": "D_both", "vartrack": "F_easiest", "kv": "E_easy",
                      "recall": "D_both", "count": "F_easiest"}  # fmt: skip
    # vartrack never lands: the rung closest to the range's middle (F's 0.3). Wording from D, sizes per family.
    plan = {name: json.loads(suite) for name, suite, _ in suite_mod.sizing_plan(SIZING)}
    assert knobs["train_phrasings"] == 6 and knobs["shared_lead"] is True
    assert knobs["kv_pairs"] == plan["E_easy"]["kv_pairs"]
    assert knobs["count_keys"] == plan["F_easiest"]["count_keys"] == 2
    assert knobs["vartrack_hops"] == 0 and "multivalue_keys" not in knobs and "recall_words" not in knobs
    SuiteConfig.from_preset(**knobs)  # a valid suite
    assert suite_mod.sizing_main(["choose", str(tmp_path), "--plan", str(SIZING)]) == 0
    assert json.loads(capsys.readouterr().out) == knobs


def test_choose_passes_over_a_rung_without_results(suite_mod, tmp_path):
    _summary(tmp_path / "E_easy_summary.csv", {f: (0.6, 0.01) for f in FAMILIES})
    knobs, chosen = suite_mod.choose_knobs(tmp_path, SIZING)  # D and F failed
    assert set(chosen.values()) == {"E_easy"} and knobs["kv_pairs"] == 3


def test_the_v7_rungs_ask_more_questions_per_row_on_every_family_under_range(suite_mod):
    """suite_sizing_v7.json sizes by training signal: each rung over v6 asks more questions per row of the five
    families v6 left under 0.4, leaves multi-key (in range) alone, and the call is 5 jobs."""
    plan = suite_mod.sizing_plan(QUALITY / "suite_sizing_v7.json")
    assert [name for name, _, _ in plan] == ["A_v6", "B_x2", "C_x4"]
    assert sum(len(seeds) for _, _, seeds in plan) == 5
    configs = [suite_mod.suite_config(Namespace(suite=suite)) for _, suite, _ in plan]
    assert configs[0] == SuiteConfig.from_preset("v6")

    def asked(c: SuiteConfig, family: str) -> int:
        return c.kv_blocks * c.kv_asked if family == "kv" else c.n_facts(family)

    for family in ("multivalue", "vartrack", "kv", "recall", "count"):
        a, b, c = (asked(cfg, family) for cfg in configs)
        assert a < b < c, family
    assert len({asked(cfg, "multikey") for cfg in configs}) == 1
    assert all(cfg.recall_echo == 4 and cfg.unwrap_filler for cfg in configs)  # v6's wording throughout


def test_choose_follows_the_sizing_files_own_ladder(suite_mod, tmp_path):
    """v7 names its rungs, most questions first: per family the first rung in range, v6's wording kept."""
    c = {"multikey": 0.5, "multivalue": 0.45, "vartrack": 0.1, "kv": 0.95, "recall": 0.2, "count": 0.3}
    b = {"multikey": 0.5, "multivalue": 0.3, "vartrack": 0.05, "kv": 0.6, "recall": 0.42, "count": 0.25}
    a = {"multikey": 0.5, "multivalue": 0.02, "vartrack": 0.04, "kv": 0.3, "recall": 0.03, "count": 0.22}
    _rungs(tmp_path, {"C_x4": c, "B_x2": b, "A_v6": a})
    v7 = QUALITY / "suite_sizing_v7.json"
    knobs, chosen = suite_mod.choose_knobs(tmp_path, v7)
    assert chosen == {"multikey": "C_x4", "multivalue": "C_x4", "vartrack": "C_x4", "kv": "B_x2",
                      "recall": "B_x2", "count": "C_x4"}  # fmt: skip
    plan = {name: json.loads(suite) for name, suite, _ in suite_mod.sizing_plan(v7)}
    assert knobs["preset"] == "v6" and knobs["multivalue_keys"] == plan["C_x4"]["multivalue_keys"]
    assert knobs["recall_quotes"] == plan["B_x2"]["recall_quotes"] and "kv_blocks" not in knobs
    SuiteConfig.from_preset(**knobs)


def test_choose_takes_a_familys_own_held_out_entry_from_its_rung(suite_mod, tmp_path):
    """v8's rungs share the knob `held_out`: each family takes its own entry from the rung chosen for it, so key-value
    lookup chosen on A (XML held out, v7's) gets no entry even where B, chosen for variable tracking, has one."""
    a = {"multikey": 0.5, "multivalue": 0.45, "vartrack": 0.5, "kv": 0.45, "recall": 0.5, "count": 0.1}
    b = {"multikey": 0.5, "multivalue": 0.5, "vartrack": 0.6, "kv": 0.6, "recall": 0.5, "count": 0.2}
    c = {"multikey": 0.5, "multivalue": 0.7, "vartrack": 0.6, "kv": 0.7, "recall": 0.5, "count": 0.3}
    _rungs(tmp_path, {"A_hard": a, "B_mid": b, "C_easy": c})
    v8 = QUALITY / "suite_sizing_v8.json"
    knobs, chosen = suite_mod.choose_knobs(tmp_path, v8)
    assert chosen["kv"] == chosen["vartrack"] == "A_hard" and chosen["count"] == "C_easy"
    assert knobs["held_out"] == {"vartrack": 5} and knobs["vartrack_hops"] == 1
    assert knobs["count_adjacent"] is True and knobs["multivalue_adjacent"] is True
    _rungs(tmp_path, {"A_hard": {**a, "kv": 0.1}})  # A's key-value now out of range: B's entry comes in
    knobs, chosen = suite_mod.choose_knobs(tmp_path, v8)
    assert chosen["kv"] == "B_mid" and knobs["held_out"] == {"vartrack": 5, "kv": 4}
    cfg = SuiteConfig.from_preset(**knobs)
    assert cfg.held_out == {"vartrack": 5, "kv": 4} and cfg.count_adjacent


def test_choose_takes_a_familys_own_depth_band_from_its_rung(suite_mod, tmp_path):
    """v9's rungs share the knob `depth_band`: a family chosen on A (v8, evidence anywhere) gets no band, one
    chosen on B or C gets its own entry of that rung's."""
    a = {"multikey": 0.45, "multivalue": 0.2, "vartrack": 0.5, "kv": 0.05, "recall": 0.3, "count": 0.35}
    b = {"multikey": 0.6, "multivalue": 0.45, "vartrack": 0.6, "kv": 0.2, "recall": 0.5, "count": 0.4}
    c = {"multikey": 0.7, "multivalue": 0.6, "vartrack": 0.7, "kv": 0.45, "recall": 0.6, "count": 0.5}
    _rungs(tmp_path, {"A_v8": a, "B_half": b, "C_quarter": c})
    knobs, chosen = suite_mod.choose_knobs(tmp_path, QUALITY / "suite_sizing_v9.json")
    assert chosen == {"multikey": "A_v8", "multivalue": "B_half", "vartrack": "A_v8", "kv": "C_quarter",
                      "recall": "B_half", "count": "B_half"}  # fmt: skip
    assert knobs == {
        "preset": "v8",
        "depth_band": {"multivalue": [0.5, 1], "kv": [0.75, 1], "recall": [0.5, 1], "count": [0.5, 1]},
        "held_out": {
            "vartrack": 5,
            "kv": 4,
        },  # v8's entries, spelled out: the knobs' map replaces the preset's
    }
    cfg = SuiteConfig.from_preset(**knobs)
    assert cfg.depth_band["kv"] == (0.75, 1.0) and "multikey" not in cfg.depth_band
    assert cfg.held_out == SuiteConfig.from_preset("v8").held_out


def test_choose_keeps_the_presets_bands_of_families_whose_rung_does_not_spell_them(suite_mod, tmp_path):
    """The lengths run (session 31): rung L_v12 is preset v12 bare, L_C spells v12's bands plus multi-value's.
    Families chosen on L_v12 keep v12's bands (key-value in the last quarter): before the fix the chosen knobs
    carried only counting's and multi-value's entries, and their map replaced v12's whole map."""
    v12 = {"multikey": 0.73, "multivalue": 0.33, "vartrack": 0.84, "kv": 0.62, "recall": 0.76, "count": 0.27}
    c = {"multikey": 0.55, "multivalue": 0.41, "vartrack": 0.83, "kv": 0.58, "recall": 0.76, "count": 0.49}
    _rungs(tmp_path, {"L_v12": v12, "L_C": c})
    knobs, chosen = suite_mod.choose_knobs(tmp_path, QUALITY / "suite_lengths_v14.json")
    assert chosen["multivalue"] == chosen["count"] == "L_C" and chosen["kv"] == chosen["recall"] == "L_v12"
    cfg = SuiteConfig.from_preset(**knobs)
    assert dataclasses.replace(cfg, preset="v14") == SuiteConfig.from_preset("v14")


def test_the_table_adds_near_and_far_evidence_where_the_runs_wrote_them(suite_mod, tmp_path, capsys):
    _summary(tmp_path / "A_v8_summary.csv", {f: (0.5, 0.02) for f in FAMILIES})
    assert suite_mod.sizing_main(["table", str(tmp_path)]) == 0
    assert "exact_match_near" not in capsys.readouterr().out  # runs before v9 wrote none
    with (tmp_path / "A_v8_summary.csv").open("a", newline="") as fh:
        csv.DictWriter(fh, fieldnames=SUMMARY_FIELDS).writerow(
            dict(config="dense", form="sup", metric="exact_match_far", family="kv", eval_len=16384, mean=0.1,
                 se=0.05, seeds=2)
        )  # fmt: skip
    assert suite_mod.sizing_main(["table", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "exact_match_far @ 16384" in out and "exact_match_near" not in out  # each where it was written
    far = out.split("exact_match_far @ 16384")[1].splitlines()
    assert far[2].split()[:6] == ["A_v8", "2", "-", "-", "-", "0.10±.05"]  # kv is the fourth family
