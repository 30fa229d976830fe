"""Suite v2 and its presets, the evidence kept per sparse layer while training (`KeptMeter`), and the part files
packed into one tar file for the device calls (`benchmarks/quality/suite_parts.py`)."""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lemo.config import SuiteConfig
from lemo.config.suite import FAMILIES, V1
from lemo.eval import suite_families as fam
from lemo.eval.suite import draw_facts

QUALITY = Path(__file__).resolve().parents[2] / "benchmarks" / "quality"
SMALL = dict(
    multikey_keys=2, multivalue_keys=1, vartrack_chains=1, kv_pairs=3, kv_asked=1, recall_quotes=1, count_keys=1
)  # fmt: skip


@pytest.fixture(scope="module")
def quality():
    sys.path.insert(0, str(QUALITY))
    try:
        import suite
        import suite_parts

        yield SimpleNamespace(suite=suite, parts=suite_parts)
    finally:
        sys.path.remove(str(QUALITY))


def test_v1_preset_keeps_the_measured_knobs_and_v2_is_the_default():
    v1 = SuiteConfig.v1()
    assert v1.preset == "v1" and all(getattr(v1, k) == v for k, v in V1.items())
    assert (v1.multivalue_values, v1.vartrack_hops, v1.kv_pairs, v1.recall_words, v1.count_max) == (
        4,
        3,
        12,
        5,
        4,
    )
    v2 = SuiteConfig()
    assert v2.preset == "v2" and v2 == SuiteConfig.from_preset("v2")
    assert SuiteConfig.from_preset("v1", count_max=6).count_max == 6
    with pytest.raises(ValueError, match="preset"):
        SuiteConfig.from_preset("no-such-preset")
    with pytest.raises(ValueError, match="kv_alphabet"):
        SuiteConfig(kv_alphabet="emoji")
    with pytest.raises(ValueError, match="count_words"):
        SuiteConfig(count_max=11)


def test_v2_answers_are_short(tok):
    facts = draw_facts(random.Random(3), SuiteConfig(), "eval")
    answers = {f.family: f.questions[0].answer for f in facts}
    assert answers["count"].strip() in fam.NUMBER_WORDS[:3]
    assert answers["kv"].strip().isdigit() and len(answers["kv"].strip()) == 3
    assert [len(v) for v in answers["multivalue"].strip().split(", ")] == [3, 3]
    assert len(answers["vartrack"].strip()) == 3 and len(answers["multikey"].strip()) == 5
    assert len(tok.encode(answers["count"], add_special_tokens=False)) == 1


def test_rows_record_every_knob(quality):
    args = SimpleNamespace(suite='{"preset": "v1", "count_max": 5}')
    cfg = quality.suite.suite_config(args)
    assert cfg.preset == "v1" and cfg.count_max == 5 and cfg.kv_pairs == 12
    recorded = json.loads(quality.suite.suite_json(cfg))
    assert set(recorded) == {f.name for f in dataclasses.fields(SuiteConfig)} and recorded["count_max"] == 5
    assert (
        json.loads(quality.suite.suite_json(quality.suite.suite_config(SimpleNamespace(suite=""))))["preset"]
        == "v2"
    )


@pytest.mark.parametrize("elimination", ["forward", "backward"])
def test_kept_meter_matches_the_selection_of_each_forward(elimination, tiny_model_dir, tok, austen_dir):
    from transformers import AutoModelForCausalLM

    import lemo
    from lemo.eval.evidence import EvidenceTable, KeptMeter, record_evidence
    from lemo.eval.suite_rows import training_rows
    from lemo.ops import blocks_with_any

    text = (austen_dir / "emma.txt").read_text(encoding="utf-8")[:60_000]
    records = training_rows([text], tok, 1024, 1, seed=7, cfg=SuiteConfig(**SMALL))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lemo.apply(model, lemo.SparsityConfig(block_size=64, keep_ratio=0.5, elimination=elimination))
    meter = KeptMeter(EvidenceTable(records, tok))
    meter.install(model)
    ids, mask = record_evidence(records[0], tok)
    x = torch.tensor(ids)[None]  # [1, T]
    n_prompt = len(tok.encode(records[0]["prompt"], add_special_tokens=False))
    ev = blocks_with_any(mask, 64)  # [nb]
    filler = ~(ev | blocks_with_any(torch.arange(len(ids)) >= n_prompt, 64))  # [nb]
    model.train()
    with torch.no_grad():
        model(input_ids=x)
    want_e, want_f = [], []
    for s in lemo.stats(model).values():  # what this forward kept, computed here by hand
        k = torch.zeros_like(ev)
        k[s["blocks"][0]] = True
        want_e.append(float((k & ev).sum() / ev.sum()))
        want_f.append(float((k & filler).sum() / filler.sum()))
    with torch.no_grad():
        model(input_ids=torch.roll(x, 1, dims=1))  # a row the table does not know: not recorded
        model.eval()
        model(input_ids=x)  # an eval forward: not recorded
    assert meter.summary()["forwards"] == 1 and want_e
    assert meter.evidence[-1] == pytest.approx(sum(want_e) / len(want_e))
    assert meter.filler[-1] == pytest.approx(sum(want_f) / len(want_f))
    assert 0 < meter.filler[-1] < 1


def test_part_files_pack_into_one_tar_and_unpack_for_a_resume(quality, tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    for job in ("dense_sup_0", "oracle_text_2"):
        (parts / f"{job}.csv").write_text(f"config\n{job}\n")
    (parts / "x.tmp").write_text("a job cut short")
    tar = tmp_path / "out" / "suite_parts.tar"
    tar.parent.mkdir()
    assert quality.parts.pack(parts, tar) == 2
    with tarfile.open(tar) as t:
        assert sorted(t.getnames()) == ["dense_sup_0.csv", "oracle_text_2.csv"]
    folder = tmp_path / "stage_folder"
    folder.mkdir()
    (folder / "default_sup_1.csv").write_text("config\ndefault\n")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "dense_sup_0.csv").write_text("newer\n")  # already there: kept
    added = quality.parts.unpack(fresh, [tar, folder, tmp_path / "missing.tar"])
    assert added == 2 and (fresh / "dense_sup_0.csv").read_text() == "newer\n"
    assert sorted(p.name for p in fresh.iterdir()) == [
        "default_sup_1.csv",
        "dense_sup_0.csv",
        "oracle_text_2.csv",
    ]
    assert quality.parts.main(["pack", str(fresh), str(tar)]) == 0
    with tarfile.open(tar) as t:
        assert len(t.getnames()) == 3


def test_unpack_keeps_every_member_inside_the_parts_folder(quality, tmp_path):
    evil = tmp_path / "evil.tar"
    src = tmp_path / "a.csv"
    src.write_text("x\n")
    with tarfile.open(evil, "w") as t:
        t.add(src, arcname="../../escape.csv")
        t.add(src, arcname="notes.txt")
    out = tmp_path / "deep" / "parts"
    assert quality.parts.unpack(out, [evil]) == 1
    assert [p.name for p in out.iterdir()] == ["escape.csv"] and not (tmp_path / "escape.csv").exists()


def test_the_gpu_script_packs_and_unpacks_the_parts():
    script = (QUALITY.parent / "device" / "gpu_capability.sh").read_text()
    section = script[script.index("suite)") : script.index(";;", script.index("suite)"))]
    # SUITE_TAG (empty by default) suffixes the names, so the default run keeps .stage/suite_parts.tar
    assert "suite_parts.py unpack" in section and '".stage/suite_parts$T.tar"' in section
    assert 'suite_parts.py pack "$P" "$OUT/suite_parts$T.tar"' in section and "exit $rc" in section
    assert "T=${SUITE_TAG:-}" in section
    assert "${SUITE_RESUME_CSV:-}" in section  # a committed CSV as finished jobs


def test_v1_draws_what_commit_cd5902a_drew():
    """The v1 preset must keep reproducing the measured setting: these are cd5902a's facts for one seed."""
    import hashlib

    facts = draw_facts(random.Random(0), SuiteConfig.v1(), "eval")
    answers = [q.answer for f in facts for q in f.questions]
    assert answers[7:10] == [" 93941", " 82420, 72522, 68024, 78334", " 62274, 97576, 91954, 10149"]
    assert answers[-8:] == [" 31227", " 004adf", " a72bb4", " faed9f", " f7e2a5", " 4", " 1", " 2"]
    fingerprint = repr([(f.statements, f.depths) for f in facts]).encode()
    assert hashlib.sha256(fingerprint).hexdigest()[:16] == "d48056c46a993a64"


def test_kept_shares_become_rows_that_the_summary_keeps(quality):
    import suite_hooks

    from lemo.eval.suite_summary import summarize

    assert suite_hooks.kept_rows({}, 16384) == []  # dense LoRA keeps everything: no rows
    kept = {"kept_evidence": 0.9, "kept_filler": 0.5, "forwards": 60}
    rows = suite_hooks.kept_rows(kept, 16384)
    assert [(r["metric"], r["value"], r["n"], r["eval_len"]) for r in rows] == [
        ("kept_evidence", 0.9, 60, 16384),
        ("kept_filler", 0.5, 60, 16384),
    ]
    raw = [{**r, "config": "oracle", "form": "sup", "seed": s} for s in (0, 1) for r in rows]
    out = {r["metric"]: r for r in summarize(raw, list(FAMILIES))}
    assert out["kept_evidence"]["mean"] == pytest.approx(0.9) and out["kept_filler"]["verdict"] == "n/a"


def test_kept_meter_sees_selections_made_in_the_backward_pass(tiny_model_dir, tok, austen_dir):
    """scorer="gradient" chooses after the forward hook has run: the meter settles them at the next forward."""
    from transformers import AutoModelForCausalLM

    import lemo
    from lemo.eval.evidence import EvidenceTable, KeptMeter, record_evidence
    from lemo.eval.suite_rows import training_rows
    from lemo.ops import blocks_with_any

    text = (austen_dir / "emma.txt").read_text(encoding="utf-8")[:60_000]
    records = training_rows([text], tok, 1024, 1, seed=7, cfg=SuiteConfig(**SMALL))
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    cfg = dict(block_size=64, keep_ratio=0.5, elimination="backward", scorer="gradient", random_fraction=0.0)
    lemo.apply(model, lemo.SparsityConfig(**cfg))
    meter = KeptMeter(EvidenceTable(records, tok))
    meter.install(model)
    ids, mask = record_evidence(records[0], tok)
    x = torch.tensor(ids)[None]  # [1, T]
    model.train()
    model(input_ids=x, labels=x).loss.backward()
    assert meter.evidence == []  # nothing chosen before the backward
    ev = blocks_with_any(mask, 64)  # [nb]
    want = []
    for s in lemo.stats(model).values():  # the backward's choices, by hand
        k = torch.zeros_like(ev)
        k[s["blocks"][0]] = True
        want.append(float((k & ev).sum() / ev.sum()))
    with torch.no_grad():
        model(input_ids=torch.roll(x, 1, dims=1))  # the next forward settles the last one's backward
    assert meter.summary()["forwards"] == 1 and want
    assert meter.evidence[-1] == pytest.approx(sum(want) / len(want))


def test_v3_preset_is_what_the_sizing_call_chose():
    """Suite v3 is the knobs `suite.py sizing choose` wrote at the measured run, over v2."""
    chosen = json.loads((QUALITY.parent / "results" / "suite_v3_sizing_chosen.json").read_text())
    v3 = SuiteConfig.from_preset("v3")
    assert v3 == dataclasses.replace(SuiteConfig(**chosen), preset="v3")
    assert (v3.train_phrasings, v3.shared_lead, v3.vartrack_hops) == (6, True, 0)


def test_a_suite_csv_splits_back_into_its_part_files_for_a_resume(quality, tmp_path):
    """A committed suite CSV is its part files' rows in turn: unpacked from it, a fresh checkout has the same
    part files byte for byte (a snapshot such as dense@42 its own), so the runner skips those jobs."""
    from suite_jobs import part_path
    from suite_report import read_parts, write_csv

    fields = ["config", "form", "seed", "metric", "value", "command"]
    parts = tmp_path / "parts"
    parts.mkdir()
    for config, form, seed in [("dense", "sup", 0), ("dense@42", "sup", 0), ("default", "text", 2)]:
        rows = [
            {
                "config": config,
                "form": form,
                "seed": seed,
                "metric": m,
                "value": v,
                "command": 'suite.py --suite {"a": 1}',
            }
            for m, v in (("exact_match", 0.5), ("ppl", 24.25))
        ]
        write_csv(part_path(parts, f"{config}:{form}:{seed}"), rows, fields)
    report = tmp_path / "suite_smollm2.csv"
    write_csv(report, read_parts(parts), fields)  # what write_report writes as the raw CSV
    fresh = tmp_path / "fresh"
    assert quality.parts.main(["unpack", str(fresh), str(report)]) == 0
    assert sorted(p.name for p in fresh.iterdir()) == sorted(p.name for p in parts.iterdir())
    assert all((fresh / p.name).read_bytes() == p.read_bytes() for p in parts.iterdir())
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(SystemExit, match="not a suite CSV"):
        quality.parts.unpack(tmp_path / "x", [bad])
