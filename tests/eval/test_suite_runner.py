"""The suite's summary (mean, standard error, suite mean, ties) and its runner's config parsing and resume; its
snapshots: the dense job saves its adapter after step N and writes dense@N's part file, which is what a dense@N
job of its own would have trained and written (docs/suite.md)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lemo import SparsityConfig
from lemo.eval.suite_summary import SUITE, mean_se, summarize, verdict

QUALITY = Path(__file__).resolve().parents[2] / "benchmarks" / "quality"
# Columns that depend on the weights (or say which run they are); the timings and provenance are the runs' own.
SAME = (
    "config", "form", "seed", "steps", "metric", "family", "eval_len", "value", "n", "first_loss", "last_loss",
)  # fmt: skip


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


def test_summary_compares_with_the_reference_on_the_seeds_both_ran():
    """A run resumed with more seeds of dense LoRA (seeds 2-3 harder): the config's seeds 0-1 are compared with
    dense's 0-1, so a gap stays a gap; its own mean and seed count stay its own. No shared seed: no verdict."""
    rows = []
    for seed, value in enumerate([0.80, 0.82, 0.40, 0.42]):
        rows.append(_raw("dense", "sup", seed, "a", value))
    rows += [_raw("lemo", "sup", 0, "a", 0.70), _raw("lemo", "sup", 1, "a", 0.71)]
    rows += [_raw("other", "sup", 7, "a", 0.5), _raw("other", "sup", 8, "a", 0.6)]
    out = {(r["config"], r["family"]): r for r in summarize(rows, ["a"])}
    lemo = out[("lemo", "a")]
    assert lemo["seeds"] == 2 and lemo["mean"] == pytest.approx(0.705)
    assert lemo["diff"] == pytest.approx(0.705 - 0.81) and lemo["verdict"] == "lower"
    assert out[("dense", "a")]["seeds"] == 4  # the reference's own row keeps every seed
    assert out[("other", "a")]["verdict"] == "n/a" and math.isnan(out[("other", "a")]["diff"])


def test_configs_parse_with_steps_and_the_oracle_flag(suite_mod):
    assert suite_mod.parse_config("dense@48", 60) == ("dense", 48, None, False)
    assert suite_mod.parse_config("default", 60) == ("default", 60, {}, False)
    name, steps, sparsity, evidence = suite_mod.parse_config("oracle", 60)
    assert (name, steps) == ("oracle", 60)
    assert evidence and suite_mod.EVIDENCE not in sparsity and sparsity["elimination"] == "backward"
    assert suite_mod.parse_config("backward-supervision", 60)[2]["scorer"] == "supervision"
    _, _, forward, evidence = suite_mod.parse_config("oracle-forward", 60)
    # forward elimination, at the keep it was measured at
    # (and without the copy tier: measured before it became SparsityConfig()'s)
    assert evidence and forward == {"random_fraction": 1.0, "keep_ratio": 0.6, "copy_ngram": 0}
    # the default's selector of its time with the evidence tier first: SparsityConfig() without the copy tier
    assert suite_mod.parse_config("oracle-default", 60)[2:] == ({"copy_ngram": 0}, True)
    assert suite_mod.parse_config("copy3", 60)[2] == {
        "keep_ratio": 0.5,
        "copy_ngram": 3,
        "copy_plain_text": True,
    }
    # the default at keep 0.6, every other field SparsityConfig()'s (the copy tier on prompt/completion rows only)
    assert SparsityConfig(**suite_mod.parse_config("copy3-keep60", 60)[2]) == SparsityConfig(keep_ratio=0.6)
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
    clock.record("dense:sup:0", 300.0)  # 60 steps and an evaluation worth 30 / 1.5 = 20 steps
    assert clock.estimate("dense@30:sup:1") == pytest.approx(300.0 / 80 * 50)
    assert clock.estimate("base:sup:0") == pytest.approx(300.0 / 80 * 20)  # evaluated only, not free


def test_clock_learns_from_the_parts_an_earlier_call_finished(suite_mod, tmp_path):
    """A resumed call estimates from the jobs earlier calls finished, not the prior (which launched nothing in one
    2026-12-05 call), whatever their form: a call that runs the text form after the sup form learns from the
    sup jobs. A NAME@N part's time is its snapshot's evaluation only: it adds an evaluation to NAME's job."""
    args = SimpleNamespace(steps=60, workers=6, overlap=3, step_s=1.5, eval_s=30)
    done = (("dense:sup:0", 100.0), ("dense@41:sup:0", 5.0), ("keep50:text:0", 72.0))
    for job, seconds in done:
        config, form, seed = job.split(":")
        with suite_mod.part_path(tmp_path, job).open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=suite_mod.FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerow({"config": config, "form": form, "seed": seed, "steps": 60, "job_s": seconds})
    clock = suite_mod.Clock(args)
    assert clock.seed_from_parts(tmp_path) == 2
    # dense:sup:0 ran 60 steps and 2 evaluations (100 units), keep50:text:0 60 steps and one (80 units)
    assert clock.estimate("dense:text:2") == pytest.approx((100.0 + 72.0) / 180 * 80)
    assert suite_mod.Clock(args).seed_from_parts(tmp_path / "none") == 0


def test_report_rebuilds_csv_summary_and_plot_from_parts(suite_mod, tmp_path):
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


def _args(suite_mod, tmp_path: Path, *extra: str):
    paths = ["--work", str(tmp_path / "work"), "--out", str(tmp_path / "out.csv")]
    return suite_mod.parse_args([*paths, *extra])


def test_the_dense_job_covers_dense_at_n_of_its_form_and_seed(suite_mod, tmp_path):
    configs = ["dense", "dense@48", "dense@52", "default", "default@48", "dense@60", "base"]
    args = _args(suite_mod, tmp_path, "--configs", *configs, "--forms", "sup", "--seeds", "0", "1")
    jobs = suite_mod.jobs_of(args)
    plan = suite_mod.snapshot_plan(args, jobs)
    # Sparse configs train on their own (their kept-evidence rows are their run's); dense@60 is not below --steps.
    assert plan == {f"dense:sup:{s}": ["dense@48", "dense@52"] for s in (0, 1)}
    assert sorted(suite_mod.covered_jobs(plan)) == [
        "dense@48:sup:0", "dense@48:sup:1", "dense@52:sup:0", "dense@52:sup:1",
    ]  # fmt: skip
    # Resume after a call cut off between dense's part file and dense@48's: dense@48 trains on its own.
    pending = [j for j in jobs if j not in ("dense:sup:1", "dense@52:sup:1")]
    assert suite_mod.snapshot_plan(args, pending) == {"dense:sup:0": ["dense@48", "dense@52"]}
    args.no_snapshots = True
    assert suite_mod.snapshot_plan(args, jobs) == {}


def test_main_launches_the_dense_job_with_its_snapshots_and_resumes(suite_mod, tmp_path, monkeypatch):
    """main's orchestration with the workers and the data stubbed: what it launches, with which command."""
    launched: list[list[str]] = []

    def fake_workers(jobs, command, workers, env, on_done, may_launch):
        launched.extend(command(j) for j in jobs)
        return []

    monkeypatch.setattr(suite_mod, "run_workers", fake_workers)
    monkeypatch.setattr(suite_mod, "write_data", lambda args: None)
    argv = ["--configs", "dense", "dense@48", "--forms", "sup", "--seeds", "0", "--work", str(tmp_path / "w")]
    argv += ["--out", str(tmp_path / "out.csv")]
    suite_mod.main(argv)
    (cmd,) = launched  # one job, not two
    worker = suite_mod.parse_args(cmd[2:])  # the worker process parses what it is given
    assert worker.only == "dense:sup:0" and worker.snapshots == ["dense@48"]

    parts = tmp_path / "out.parts"
    (parts / "dense_sup_0.csv").write_text("config\n")  # dense done, dense@48 missing (the job was killed)
    launched.clear()
    suite_mod.main(argv)
    (cmd,) = launched
    assert suite_mod.parse_args(cmd[2:]).only == "dense@48:sup:0" and "--snapshots" not in cmd

    (parts / "dense_sup_0.csv").unlink()
    launched.clear()
    suite_mod.main([*argv, "--no-snapshots"])
    assert [suite_mod.parse_args(c[2:]).only for c in launched] == ["dense:sup:0", "dense@48:sup:0"]
    assert not any("--snapshots" in c for c in launched)


def test_clock_counts_the_snapshot_evaluations(suite_mod):
    args = SimpleNamespace(steps=60, workers=6, overlap=3, step_s=1.5, eval_s=30)
    clock = suite_mod.Clock(args, plan={"dense:sup:0": ["dense@48", "dense@52"]})
    assert clock.estimate("dense:sup:0") == pytest.approx((60 * 1.5 + 3 * 30) * 2)
    assert clock.estimate("dense:sup:1") == pytest.approx((60 * 1.5 + 30) * 2)
    clock.record("dense:sup:0", 200.0)  # 60 steps and 3 evaluations of 20 steps each: 120 steps alone
    assert clock.estimate("dense@30:sup:1") == pytest.approx(200.0 / 120 * 50)


def _tiny_pipeline(suite_mod, monkeypatch, tiny_model_dir: Path) -> None:
    """The suite's pipeline (data, training, evaluation, part files) on the tiny Llama with SmolLM2's tokenizer:
    the trainings and evaluations run in seconds on a CPU, where SmolLM2's take minutes."""
    from lemo.integrations.peft import load_adapter
    from lemo.integrations.transformers.loading import load_model

    setup = suite_mod.setup_config
    tiny = str(tiny_model_dir)
    monkeypatch.setattr(suite_mod, "setup_config", lambda *a, **kw: setup(*a, model=tiny, **kw))

    def eval_model(adapter):
        model, tok = load_model(tiny_model_dir, dtype=torch.float32, rope_scaling="yarn", rope_factor=2.0)
        return (model if adapter is None else load_adapter(model, adapter)), tok

    monkeypatch.setattr(suite_mod, "load_eval_model", eval_model)


@pytest.fixture
def one_thread():
    """Tiny matrices gain nothing from a second thread, and on a loaded 2-core box two OpenMP threads spend most
    of the run waiting for each other (a 3-step job: 14 s with 2 threads, 2 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _rows(path: Path) -> list[tuple]:
    with path.open(newline="") as fh:
        return [tuple(r[c] for c in SAME) for r in csv.DictReader(fh)]


def test_snapshot_is_the_adapter_of_a_separate_n_step_run(
    suite_mod, tiny_model_dir, tmp_path, monkeypatch, one_thread
):
    """One dense job of 20 steps writes dense@3's and dense@5's part files from its own run; a dense@3 job of its
    own trains the same adapter bit for bit and writes the same rows. --steps 20 makes the warm-up 2 steps: a
    3-step run with its own warm-up (1 step) would differ."""
    from safetensors.torch import load_file

    _tiny_pipeline(suite_mod, monkeypatch, tiny_model_dir)
    knobs = '{"families": ["multikey"], "multikey_keys": 1}'
    common = ["--configs", "dense", "dense@3", "dense@5", "--forms", "sup", "--seeds", "0", "--steps", "20"]
    common += ["--seq-len", "128", "--rows", "4", "--eval-lengths", "128", "--questions", "2"]
    common += ["--suite", knobs, "--ppl-lengths", "64", "--ppl-windows", "1", "--lr", "1e-2"]
    args = _args(suite_mod, tmp_path, *common, "--parts", str(tmp_path / "parts"))
    args.parts.mkdir()
    suite_mod.write_data(args)
    suite_mod.run_job(args, "dense:sup:0", {}, ["dense@3", "dense@5"])
    alone = _args(suite_mod, tmp_path, *common, "--parts", str(tmp_path / "alone"))
    alone.parts.mkdir()
    suite_mod.run_job(alone, "dense@3:sup:0", {})  # the same work folder: the same data

    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == [
        "dense_at_3_sup_0.csv", "dense_at_5_sup_0.csv", "dense_sup_0.csv",
    ]  # fmt: skip
    runs = tmp_path / "work" / "runs"
    weights = {
        name: load_file(str(folder / "adapter_model.safetensors"))
        for name, folder in [
            ("snap3", runs / "dense_sup_0" / "adapter-step-3"),
            ("snap5", runs / "dense_sup_0" / "adapter-step-5"),
            ("full", runs / "dense_sup_0" / "adapter"),
            ("alone3", runs / "dense_at_3_sup_0" / "adapter"),
        ]
    }
    assert weights["snap3"].keys() == weights["alone3"].keys() and len(weights["snap3"]) > 0
    assert all(torch.equal(weights["snap3"][k], weights["alone3"][k]) for k in weights["alone3"])
    for other in ("snap5", "full"):  # the snapshots are the run on its way, not its end
        assert not all(torch.equal(weights["snap3"][k], weights[other][k]) for k in weights["snap3"])

    snap_rows = _rows(tmp_path / "parts" / "dense_at_3_sup_0.csv")
    alone_rows = _rows(tmp_path / "alone" / "dense_at_3_sup_0.csv")
    metrics = {r[SAME.index("metric")] for r in snap_rows}
    assert snap_rows == alone_rows and metrics >= {"exact_match", "ppl"}
    assert metrics >= {"value_start_accuracy", "value_rest_accuracy"}  # finding a value apart from copying it
    with (tmp_path / "parts" / "dense_at_5_sup_0.csv").open(newline="") as fh:
        five = list(csv.DictReader(fh))
    with (tmp_path / "parts" / "dense_sup_0.csv").open(newline="") as fh:
        full = list(csv.DictReader(fh))
    assert {r["steps"] for r in five} == {"5"} and {r["config"] for r in five} == {"dense@5"}
    # The time to step 5 is part of the whole run's training time.
    assert 0 < float(five[0]["train_s"]) <= float(full[0]["train_s"])


def test_workers_are_capped_to_the_jobs_the_gpus_free_memory_holds(suite_mod, monkeypatch, capsys):
    """80 GB free holds 7 jobs of 11 GiB (12 workers lost 4 of 30 jobs to GPU memory on an H100); 141 GB holds
    12; no nvidia-smi (a CPU machine) leaves the workers as given."""
    import subprocess

    import common

    def smi(free_mib: str):
        def run(*_a, **_k):
            return subprocess.CompletedProcess([], 0, stdout=f"{free_mib}\n", stderr="")

        return run

    monkeypatch.setattr(common.subprocess, "run", smi("81000"))
    assert common.gpu_worker_cap(12, common.job_gib(16384)) == 7
    assert "workers: 12 -> 7" in capsys.readouterr().out
    assert common.gpu_worker_cap(4, common.job_gib(16384)) == 4
    monkeypatch.setattr(common.subprocess, "run", smi("143000"))
    assert common.gpu_worker_cap(12, common.job_gib(16384)) == 12
    monkeypatch.setattr(common.subprocess, "run", smi("2000"))
    assert common.gpu_worker_cap(8, common.job_gib(16384)) == 1  # never none: the job may still fit

    def missing(*_a, **_k):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(common.subprocess, "run", missing)
    assert common.gpu_worker_cap(8, 11.0) == 8
    assert common.job_gib(4096) == 3.0 and common.job_gib(32768) == 22.0
