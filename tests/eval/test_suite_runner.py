"""The suite's summary (mean, standard error, suite mean, ties) and its runner's config parsing and resume."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from lemo.eval.suite_summary import SUITE, mean_se, summarize, verdict

QUALITY = Path(__file__).resolve().parents[2] / "benchmarks" / "quality"


@pytest.fixture(scope="module")
def suite_mod():
    sys.path.insert(0, str(QUALITY))
    try:
        import suite

        yield suite
    finally:
        sys.path.remove(str(QUALITY))


@pytest.fixture(scope="module")
def suite_hooks(suite_mod):
    import suite_hooks

    return suite_hooks


def test_mean_and_standard_error():
    mean, se = mean_se([0.5, 0.6, 0.7])
    assert mean == pytest.approx(0.6) and se == pytest.approx(0.1 / math.sqrt(3))
    assert math.isnan(mean_se([0.4])[1])


def test_a_difference_under_two_standard_errors_is_a_tie():
    assert verdict(0.019, 0.01) == "tie"
    assert verdict(0.021, 0.01) == "higher" and verdict(-0.021, 0.01) == "lower"
    assert verdict(0.0, 0.0) == "tie" and verdict(0.3, math.nan) == "n/a"


def _raw(config, form, seed, family, value, metric="exact_match", length=16384):
    return dict(
        config=config,
        form=form,
        seed=str(seed),
        metric=metric,
        family=family,
        eval_len=str(length),
        value=str(value),
    )


def test_summary_marks_ties_and_takes_the_suite_mean_per_seed():
    fams = ["a", "b"]
    rows = []
    for seed, (da, db) in enumerate([(0.5, 0.7), (0.6, 0.8), (0.7, 0.9)]):
        rows += [_raw("dense", "sup", seed, "a", da), _raw("dense", "sup", seed, "b", db)]
        rows += [_raw("close", "sup", seed, "a", da + 0.01), _raw("close", "sup", seed, "b", db - 0.02)]
        rows += [_raw("worse", "sup", seed, "a", 0.1 + 0.01 * seed), _raw("worse", "sup", seed, "b", 0.2)]
        rows += [_raw("dense", "sup", seed, "-", 10 + seed, metric="ppl")]
    rows.append(_raw("partial", "sup", 0, "a", 0.9))  # a seed without every family has no suite score
    out = {(r["config"], r["family"], r["metric"]): r for r in summarize(rows, fams)}
    dense_suite = out[("dense", SUITE, "exact_match")]
    assert dense_suite["mean"] == pytest.approx(0.7) and dense_suite["seeds"] == 3
    assert dense_suite["se"] == pytest.approx(0.1 / math.sqrt(3)) and dense_suite["verdict"] == "reference"
    assert out[("close", SUITE, "exact_match")]["verdict"] == "tie"
    worse = out[("worse", SUITE, "exact_match")]
    assert worse["verdict"] == "lower" and worse["diff"] == pytest.approx(0.155 - 0.7)
    assert out[("worse", "b", "exact_match")]["se"] == 0.0
    assert ("partial", SUITE, "exact_match") not in out and out[("partial", "a", "exact_match")][
        "verdict"
    ] == "n/a"
    assert out[("dense", "-", "ppl")]["mean"] == pytest.approx(11)


def test_configs_parse_with_steps_and_the_oracle_flag(suite_mod):
    assert suite_mod.parse_config("dense@48", 60) == ("dense", 48, None, False)
    assert suite_mod.parse_config("default", 60) == ("default", 60, {}, False)
    name, steps, sparsity, evidence = suite_mod.parse_config("oracle", 60)
    assert (name, steps) == ("oracle", 60)
    assert evidence and suite_mod.EVIDENCE not in sparsity and sparsity["elimination"] == "backward"
    assert suite_mod.parse_config("backward-supervision", 60)[2]["scorer"] == "supervision"
    assert suite_mod.parse_config("base", 60)[1] == 0
    for bad in ("nope", "dense@x", "text:dense"):
        with pytest.raises(SystemExit, match="unknown config"):
            suite_mod.parse_config(bad, 60)


def test_jobs_cover_configs_forms_and_seeds_longest_first(suite_mod, tmp_path):
    args = SimpleNamespace(
        configs=["base", "dense@30", "dense"], forms=["sup", "text"], seeds=[0, 1], steps=60
    )
    jobs = suite_mod.jobs_of(args)
    assert jobs.count("base:sup:0") == 1 and not any(j.startswith("base:") for j in jobs[:-1])
    jobs.remove("base:sup:0")
    assert len(jobs) == 8 and jobs[:4] == ["dense:sup:0", "dense:sup:1", "dense:text:0", "dense:text:1"]
    paths = {suite_mod.part_path(tmp_path, j) for j in jobs}
    assert len(paths) == 8 and suite_mod.part_path(tmp_path, "dense@30:sup:0").name == "dense_at_30_sup_0.csv"


def test_clock_uses_the_prior_then_measured_time(suite_mod):
    args = SimpleNamespace(steps=60, workers=6, overlap=3, step_s=1.5, eval_s=30)
    clock = suite_mod.Clock(args)
    assert clock.estimate("dense:sup:0") == pytest.approx((60 * 1.5 + 30) * 2)
    clock.record("dense:sup:0", 300.0)
    assert clock.estimate("dense@30:sup:1") == pytest.approx(150.0)


def test_report_rebuilds_csv_summary_and_plot_from_parts(suite_mod, tmp_path):
    import csv

    from suite_report import write_report

    parts = tmp_path / "parts"
    parts.mkdir()
    for config in ("dense", "default"):
        for seed in (0, 1):
            with (parts / f"{config}_sup_{seed}.csv").open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=suite_mod.FIELDS, extrasaction="ignore")
                w.writeheader()
                for fam in ("multikey", "count"):
                    w.writerow(_raw(config, "sup", seed, fam, 0.5 + 0.1 * seed + (config == "dense") * 0.2))
    out = tmp_path / "suite.csv"
    write_report(parts, out, suite_mod.FIELDS, "dense", ["multikey", "count"])
    assert len(list(csv.DictReader(out.open()))) == 8
    summary = list(csv.DictReader((tmp_path / "suite_summary.csv").open()))
    assert {r["verdict"] for r in summary if r["config"] == "default"} == {"lower"}
    assert (tmp_path / "suite.png").stat().st_size > 1000


def test_oracle_training_hands_every_row_its_evidence(suite_hooks, tiny_model_dir, tok, austen_dir, tmp_path):
    """Through the real trainer (tokenization, packing, the step loop): each training forward finds its row."""
    import json

    import torch

    from lemo.config import SuiteConfig
    from lemo.eval.evidence import EvidenceTable, record_evidence
    from lemo.eval.suite_rows import training_rows
    from lemo.testing import tiny_finetune_config
    from lemo.train.loop import finetune

    small = SuiteConfig(
        multikey_keys=2, multivalue_keys=1, multivalue_values=2, vartrack_chains=1, vartrack_hops=1,
        kv_pairs=3, kv_asked=1, recall_quotes=1, count_keys=1,
    )  # fmt: skip
    text = (austen_dir / "emma.txt").read_text(encoding="utf-8")[:60_000]
    records = training_rows([text], tok, 1024, 2, seed=5, cfg=small)
    data = tmp_path / "sup.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    seen = []
    original = EvidenceTable.mask_for

    def spy(self, input_ids):
        seen.append((input_ids[0].tolist(), original(self, input_ids)))
        return seen[-1][1]

    cfg = tiny_finetune_config(
        tiny_model_dir, data, tmp_path / "run", seq_len=1024, steps=2, save_every=0, data_mode="pack",
        sparsity={"block_size": 64, "keep_ratio": 0.5},
    )  # fmt: skip
    EvidenceTable.mask_for = spy
    try:
        with suite_hooks.evidence_hooks(records, tok, oracle=True) as meter:
            finetune(cfg)
    finally:
        EvidenceTable.mask_for = original
    kept = meter.summary()
    assert kept["forwards"] == 2 and kept["kept_evidence"] > kept["kept_filler"]  # the oracle keeps it first
    import lemo.train.loop as loop

    assert loop.apply.__name__ == "apply"  # put back after the run
    expected = {tuple(ids[:64]): mask for ids, mask in (record_evidence(r, tok) for r in records)}
    assert len(seen) == 2
    for ids, mask in seen:
        assert mask is not None and mask.shape == (1, 1024)
        want = expected[tuple(ids[:64])]
        assert torch.equal(mask[0, : len(want)], want) and mask[0].sum() > 0


def test_work_folder_refuses_data_made_with_other_settings(suite_mod, tmp_path):
    args = SimpleNamespace(suite="", seq_len=1024, rows=2, questions=4, eval_lengths=[1024], work=tmp_path)
    suite_mod.check_stamp(args)
    suite_mod.check_stamp(args)  # the same settings: resume
    args.suite = '{"multikey_keys": 3}'
    with pytest.raises(SystemExit, match="other settings"):
        suite_mod.check_stamp(args)
