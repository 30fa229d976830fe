"""The capability suite (docs/suite.md): configs x forms x seeds trained side by side on one GPU, each adapter
evaluated dense on six held-out families; raw rows, a summary with standard errors and ties, and a plot.

Setup of issue 19: SmolLM2-135M-Instruct, YaRN x2 to 16K, LoRA r8 on q/k/v/o, `--steps` steps of one 16K row,
lr 5e-4, gradient checkpointing. Rows mix every family (`lemo.eval.suite_rows`) in training phrasings; eval
uses the held-out phrasing, eval-pool names and the held-out novel. A config is NAME or NAME@STEPS (fewer
steps: the equal-GPU-time baseline; the warm-up stays that of --steps). NAME maps to SparsityConfig fields in
`CONFIGS` (None: dense LoRA); a new config is one entry, and the fields pass through to the library as they are.

    python benchmarks/quality/suite.py --configs dense dense@48 default backward-random backward-supervision \\
        oracle --forms sup text --seeds 0 1 2 --workers 8 --budget-s 540 --out benchmarks/results/suite_smollm2.csv

Every job (config, form, seed) writes its own part file under --parts; a job whose part file exists is skipped,
so the same command resumes after --budget-s stopped it (or after a device call ended). The CSV, the summary
(`<out>_summary.csv`) and the plot (`<out>.png`) are rebuilt from every part file at the end.

A dense@N job is not trained when dense of the same form and seed trains in the same call: that job saves its
adapter after step N and writes dense@N's part file too (snapshots, docs/suite.md; --no-snapshots: train it).

Sizing (`gpu_capability.sh sizing`) runs one such command per variant of a sizing file (suite_sizing.json: name ->
knobs over preset v2, plus optional "seeds"), and uses three helpers of this script:

    python benchmarks/quality/suite.py sizing plan benchmarks/quality/suite_sizing.json   # name, --suite, seeds
    python benchmarks/quality/suite.py sizing table RESULTS --lengths 16384 4096   # the variants' summaries
    python benchmarks/quality/suite.py sizing choose RESULTS --plan FILE   # knobs sizing every family (JSON)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import multiprocessing
import os
import pickle
import re
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from common import (  # benchmarks/quality/common.py, beside this script
    adapter_snapshots,
    load_eval_model,
    provenance,
    run_workers,
    setup_config,
    snapshot_dir,
    timed_finetune,
)
from suite_hooks import evidence_hooks, kept_rows  # beside this script too
from suite_report import write_report

from lemo.assets import austen_split, smollm2_dir
from lemo.config import SuiteConfig
from lemo.config.suite import FAMILIES
from lemo.eval.capability import score_samples
from lemo.eval.perplexity import perplexity
from lemo.eval.suite_rows import eval_samples, text_form, training_rows
from lemo.train.loop import FinetuneResult

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the data is made in forked processes
EVIDENCE = (
    "evidence_oracle"  # a CONFIGS entry with this key set: the evidence mask is handed to the selection
)
# name: None for dense LoRA, else SparsityConfig keyword arguments, passed through unchanged.
CONFIGS: dict[str, dict | None] = {
    "base": None,  # untrained: evaluated only
    "dense": None,
    "default": {},  # SparsityConfig() at the run's commit: the supervision scorer at keep 0.5 since 2026-12-05
    # The configs below spell out keep 0.6, the keep they were measured at (SparsityConfig()'s until 2026-12-05).
    #
    # the default before 2026-12-05: labelled blocks first, the rest uniformly at random (the v1-v3 runs' "default")
    "random": {"scorer": "oracle", "random_fraction": 1.0, "keep_ratio": 0.6},
    "backward-random": {"elimination": "backward", "random_fraction": 1.0, "keep_ratio": 0.6},
    "backward-supervision": {
        "elimination": "backward",
        "scorer": "supervision",
        "random_fraction": 0.25,
        "keep_ratio": 0.6,
    },
    # each layer's rows chosen in its backward pass by the loss gradient at its output (lemo.sparsity.backward)
    "backward-gradient": {
        "elimination": "backward",
        "scorer": "gradient",
        "random_fraction": 0.25,
        "keep_ratio": 0.6,
    },
    # forward elimination, shared selection, the supervision scorer choosing 3/4 of the free budget: the default
    # from 2026-12-05 at keep 0.6, named so in the runs that compared it with the one before
    "supervision": {"scorer": "supervision", "random_fraction": 0.25, "keep_ratio": 0.6},
    # the default with the last layer sparse too (a lower GPU peak; docs/design.md section 1)
    "upper": {"sparse_layers": "upper", "keep_ratio": 0.6},
    # the supervision selector at keep 0.5: measured as what issue 20's 0.75x step would cost in capability; it
    # became SparsityConfig() after that run (the same day), so at later commits it equals "default"
    "keep50": {"keep_ratio": 0.5},
    "oracle": {"elimination": "backward", "random_fraction": 1.0, "keep_ratio": 0.6, EVIDENCE: True},
    # the fast mode's upper bound: forward elimination (the default's) with the evidence blocks kept first
    "oracle-forward": {"random_fraction": 1.0, "keep_ratio": 0.6, EVIDENCE: True},
}
FORMS = ("sup", "text")
FIELDS = [
    "config", "form", "seed", "steps", "metric", "family", "eval_len", "value", "n", "train_s", "job_s",
    "first_loss", "last_loss", "sparsity", "suite", "seq_len", "gpu", "torch", "transformers", "peft", "commit",
    "timestamp", "command",
]  # fmt: skip


def parse_config(spec: str, default_steps: int) -> tuple[str, int, dict | None, bool]:
    """ "dense@48" -> ("dense", 48, None, False); "oracle" -> ("oracle", steps, {fields}, True)."""
    name, _, steps = spec.partition("@")
    if name not in CONFIGS or (steps and not steps.isdigit()):
        raise SystemExit(f"unknown config {spec!r}; use NAME[@STEPS] with NAME in {', '.join(CONFIGS)}")
    fields = CONFIGS[name]
    evidence = bool(fields and fields.get(EVIDENCE))
    sparsity = None if fields is None else {k: v for k, v in fields.items() if k != EVIDENCE}
    return name, (0 if name == "base" else int(steps) if steps else default_steps), sparsity, evidence


def job_name(config: str, form: str, seed: int) -> str:
    return f"{config}:{form}:{seed}"


def part_path(parts: Path, job: str) -> Path:
    return parts / (job.replace(":", "_").replace("@", "_at_") + ".csv")


def jobs_of(args) -> list[str]:
    """Every (config, form, seed), longest trainings first so the last wave of the pool is short. The
    untrained `base` is evaluated once: it has neither form nor seed."""
    jobs = [
        job_name(c, f, s)
        for c in args.configs
        for f in (args.forms[:1] if c == "base" else args.forms)
        for s in (args.seeds[:1] if c == "base" else args.seeds)
    ]
    return sorted(jobs, key=lambda j: -parse_config(j.split(":")[0], args.steps)[1])


def snapshot_plan(args, pending: Sequence[str]) -> dict[str, list[str]]:
    """Full job -> the NAME@N configs it also evaluates, from its own adapter after step N (snapshots).

    setup_config makes a run of N steps the full run stopped early (the warm-up of --steps, a constant rate
    after it, the same seed and data order). Dense LoRA draws nothing that depends on the step count, so its
    adapter after step N *is* NAME@N's. A NAME@N job is covered when N is below --steps and the full job of
    the same form and seed is pending too; else (the full job done before, e.g. the call that ran it was cut
    off between its part files, or --no-snapshots) it trains on its own. Sparse configs always do: their
    kept-evidence rows average over the steps their run trained.
    """
    if args.no_snapshots:
        return {}
    todo, plan = set(pending), defaultdict(list)
    for job in pending:
        spec, form, seed = job.split(":")
        name, steps, _, _ = parse_config(spec, args.steps)
        full = job_name(name, form, int(seed))
        if (
            "@" in spec
            and name != "base"
            and CONFIGS[name] is None
            and 0 < steps < args.steps
            and full in todo
        ):
            plan[full].append(spec)
    return {full: sorted(specs, key=lambda s: parse_config(s, args.steps)[1]) for full, specs in plan.items()}


def covered_jobs(plan: Mapping[str, Sequence[str]]) -> list[str]:
    """The NAME@N jobs that `plan` has their full jobs write."""
    jobs = []
    for full, specs in plan.items():
        _, form, seed = full.split(":")
        jobs += [job_name(spec, form, int(seed)) for spec in specs]
    return jobs


def suite_config(args) -> SuiteConfig:
    """--suite's JSON: a "preset" (default v2) and knobs that override it."""
    knobs = json.loads(args.suite) if args.suite else {}
    return SuiteConfig.from_preset(knobs.pop("preset", "v2"), **knobs)


def suite_json(cfg: SuiteConfig) -> str:
    """Every knob, spelled out: a row read later says what ran, whatever the defaults have become."""
    return json.dumps(dataclasses.asdict(cfg), sort_keys=True)


ROWS_PER_TASK = 10  # training rows per data-making process (a 16K row takes about a second to fit)


def _tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir(), local_files_only=True)


def _rows(args, seed: int, first: int) -> list[dict]:
    n = min(ROWS_PER_TASK, args.rows - first)
    return training_rows(austen_split()[0], _tokenizer(), args.seq_len, n, seed, suite_config(args), first)


def _samples(args, length: int, family: str) -> list:
    texts, cfg = austen_split()[1], suite_config(args)
    return eval_samples(texts, _tokenizer(), [length], args.questions, 1, cfg, families=[family])


def check_stamp(args) -> None:
    """--work keeps the data for a resume: refuse to reuse data made with other settings."""
    stamp = dict(suite=dataclasses.asdict(suite_config(args)), seq_len=args.seq_len, rows=args.rows)
    stamp.update(questions=args.questions, eval_lengths=args.eval_lengths)
    stamp = json.loads(json.dumps(stamp))  # tuples as lists, as read back
    path = args.work / "data.json"
    if path.exists() and json.loads(path.read_text()) != stamp:
        raise SystemExit(f"{args.work} holds data made with other settings ({path}); pass another --work.")
    args.work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamp))


def write_data(args) -> None:
    """Training rows per seed (both forms, the same rows) and the eval samples, once; kept for a resume."""
    smollm2_dir()  # convert the model once, before the processes below read it
    check_stamp(args)
    todo = [s for s in args.seeds if not (args.work / f"data/s{s}/text.jsonl").exists()]
    evals = args.work / "eval.pkl"
    cells = [] if evals.exists() else [(n, f) for n in args.eval_lengths for f in suite_config(args).families]
    t0 = time.perf_counter()
    fork = multiprocessing.get_context("fork")  # the children reuse this process's imports and arguments
    with ProcessPoolExecutor(max(1, min(os.cpu_count() or 1, 16)), mp_context=fork) as pool:
        rows = {s: [pool.submit(_rows, args, s, i) for i in range(0, args.rows, ROWS_PER_TASK)] for s in todo}
        samples = [pool.submit(_samples, args, n, f) for n, f in cells]
        for s, futures in rows.items():
            folder = args.work / f"data/s{s}"
            folder.mkdir(parents=True, exist_ok=True)
            records = [r for fut in futures for r in fut.result()]
            with (folder / "sup.jsonl").open("w") as sup, (folder / "text.jsonl.tmp").open("w") as text:
                for r in records:
                    sup.write(json.dumps(r) + "\n")
                    text.write(json.dumps(text_form(r)) + "\n")
            (folder / "text.jsonl.tmp").rename(folder / "text.jsonl")  # last: marks the seed's data complete
        if cells:
            with evals.open("wb") as fh:
                pickle.dump([s for fut in samples for s in fut.result()], fh)
    print(
        f"suite data: seeds {todo or 'cached'}, eval {len(cells)} cells, {time.perf_counter() - t0:.0f} s",
        flush=True,
    )


@dataclass
class Trained:
    """A job's training: the finetune result, its seconds, the kept shares ({} for dense LoRA, which keeps
    everything) and, per snapshot step N, the `time.perf_counter()` at which step N ended."""

    result: FinetuneResult
    seconds: float
    kept: dict[str, float]
    snapshots: dict[int, float] = field(default_factory=dict)


def train(
    args, name: str, steps: int, sparsity: dict | None, evidence: bool, form: str, seed: int, job: str,
    snapshots: Sequence[int] = (),
) -> Trained:  # fmt: skip
    """Train one job; with `snapshots` (dense LoRA only, see snapshot_plan), also save the adapter after each
    of those steps (`snapshot_dir`)."""
    data = args.work / f"data/s{seed}/{form}.jsonl"
    # Packed rows hold one record each (records fill the row): a row starts with its record, which the
    # evidence lookup needs.
    cfg = setup_config(
        data,
        args.seq_len,
        steps,
        args.steps,
        args.lr,
        sparsity,
        seed=seed,
        output_dir=str(run_dir(args, job)),
        overwrite=True,
    )
    if sparsity is None:
        with adapter_snapshots(run_dir(args, job), snapshots) as ended:
            result, seconds = timed_finetune(job, cfg)
        return Trained(result, seconds, {}, ended)
    assert not snapshots, "snapshot_plan covers dense LoRA only"
    records = [json.loads(line) for line in data.open()]
    with evidence_hooks(records, _tokenizer(), oracle=evidence) as meter:
        result, seconds = timed_finetune(job, cfg)
    return Trained(result, seconds, meter.summary())


def run_dir(args, job: str) -> Path:
    return args.work / "runs" / part_path(Path(), job).stem


def evaluate(args, adapter: Path | None) -> list[dict]:
    """Teacher-forced exact match per family and length, and held-out perplexity; the adapter runs dense."""
    from lemo.train.data import tokenize_documents

    model, tok = load_eval_model(adapter)
    with (args.work / "eval.pkl").open("rb") as fh:
        samples = pickle.load(fh)
    res = score_samples(model, tok, samples, modes=("teacher",), progress=False)
    cells = defaultdict(list)
    for o in res.samples:
        cells[(o.task, o.length)].append(o)
    rows = []
    for (family, length), group in sorted(cells.items()):
        n = len(group)
        rows.append(
            dict(
                metric="exact_match",
                family=family,
                eval_len=length,
                value=sum(o.correct for o in group) / n,
                n=n,
            )
        )
        tok_acc = sum(o.token_accuracy for o in group) / n
        rows.append(dict(metric="token_accuracy", family=family, eval_len=length, value=tok_acc, n=n))
    held = torch.tensor(tokenize_documents([austen_split()[1]], tok)[0])
    for n in args.ppl_lengths:
        r = perplexity(model, held, context=n, stride=n, max_windows=args.ppl_windows)
        rows.append(dict(metric="ppl", family="-", eval_len=n, value=r.ppl, n=r.tokens))
    return rows


def run_job(args, job: str, env: dict, snapshots: Sequence[str] = ()) -> None:
    """One (config, form, seed): train, evaluate, write its part file; then the part file of each NAME@N config
    in `snapshots` (snapshot_plan), from this run's adapter after step N."""
    t0 = time.perf_counter()
    spec, form, seed = job.split(":")
    name, steps, sparsity, evidence = parse_config(spec, args.steps)
    extra = dict(config=spec, form=form, seed=int(seed), steps=steps, seq_len=args.seq_len, **env)
    extra.update(
        sparsity="untrained" if name == "base" else json.dumps(CONFIGS[name]),
        suite=suite_json(suite_config(args)),
    )
    if name == "base":
        rows = evaluate(args, None)
        write_part(args, job, {**extra, "job_s": round(time.perf_counter() - t0, 1)}, rows)
        return
    at = {s: parse_config(s, args.steps)[1] for s in snapshots}
    t_train = time.perf_counter()
    trained = train(args, name, steps, sparsity, evidence, form, int(seed), job, sorted(set(at.values())))
    losses = trained.result.losses
    extra.update(train_s=round(trained.seconds, 1), first_loss=losses[0], last_loss=losses[-1])
    rows = evaluate(args, trained.result.adapter_dir) + kept_rows(trained.kept, args.seq_len)
    write_part(args, job, {**extra, "job_s": round(time.perf_counter() - t0, 1)}, rows)
    for snap, n in at.items():
        if n not in trained.snapshots:  # the dense part is written: a resume trains NAME@N on its own
            raise RuntimeError(f"{job} saved no adapter after step {n}; run {snap} with --no-snapshots.")
        t_eval = time.perf_counter()
        rows = evaluate(args, snapshot_dir(run_dir(args, job), n))
        ended = trained.snapshots[n]
        # What a job of its own would have measured: its training to step N (the load and steps 1..N of this
        # run), then its evaluation; the final save such a run makes (well under a second) is left out.
        snap_s = ended - t0 + time.perf_counter() - t_eval
        snap_extra = dict(config=snap, steps=n, train_s=round(ended - t_train, 1), last_loss=losses[n - 1])
        write_part(
            args, job_name(snap, form, int(seed)), {**extra, **snap_extra, "job_s": round(snap_s, 1)}, rows
        )


def write_part(args, job: str, extra: dict, rows: list[dict]) -> None:
    """`rows` with the job's columns `extra`, as its part file (atomically: a killed job leaves none)."""
    out = part_path(args.parts, job)
    tmp = out.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**extra, **r})
    tmp.rename(out)
    em = {(r["family"], r["eval_len"]): r["value"] for r in rows if r["metric"] == "exact_match"}
    top = max((n for _, n in em), default=0)
    print(
        job,
        " ".join(f"{f}={v:.2f}" for (f, n), v in sorted(em.items()) if n == top),
        f"({extra['job_s']:.0f} s)",
        flush=True,
    )


class Clock:
    """Per-job time estimates for --budget-s: a prior until jobs finish, then what they measured.

    A job costs its training steps plus its evaluations (one, and one per snapshot it evaluates, `plan`), an
    evaluation counting as `eval_s / step_s` steps. The prior: `step_s` per step alone, slowed by sharing the
    GPU with `workers` processes at a throughput gain of `overlap` (several small trainings fill the GPU better);
    once jobs finished, their measured seconds per such step.
    """

    def __init__(
        self, args, t0: float | None = None, plan: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self.args, self.t0, self.done = args, time.perf_counter() if t0 is None else t0, []
        self.plan = plan or {}

    def units(self, job: str) -> float:
        """The job's work in steps alone: its training steps and its evaluations."""
        steps = parse_config(job.split(":")[0], self.args.steps)[1]
        evals = 1 + len(self.plan.get(job, ()))
        return steps + evals * self.args.eval_s / max(self.args.step_s, 1e-9)

    def estimate(self, job: str) -> float:
        if not self.done:
            share = max(1.0, self.args.workers / self.args.overlap)
            return self.units(job) * self.args.step_s * share
        return sum(s for s, _ in self.done) / sum(u for _, u in self.done) * self.units(job)

    def record(self, job: str, seconds: float) -> None:
        self.done.append((seconds, self.units(job)))

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["dense", "default"])
    ap.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--seq-len", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument(
        "--rows", type=int, default=60, help="training rows per seed (60 steps of batch 1 see each once)"
    )
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-lengths", type=int, nargs="+", default=[16384, 8192, 4096])
    ap.add_argument("--questions", type=int, default=32, help="eval questions per family and length")
    ap.add_argument("--ppl-lengths", type=int, nargs="+", default=[16384])
    ap.add_argument("--ppl-windows", type=int, default=4)
    ap.add_argument(
        "--suite",
        default="",
        help='SuiteConfig knobs as JSON over a preset (default v2), e.g. \'{"preset": "v1", "multikey_keys": 12}\'',
    )
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument(
        "--budget-s", type=float, default=0, help="launch no job that would end after this (0: no limit)"
    )
    ap.add_argument("--step-s", type=float, default=1.5, help="prior: seconds per 16K step, one job alone")
    ap.add_argument("--eval-s", type=float, default=30, help="prior: seconds of evaluation per job, alone")
    ap.add_argument("--overlap", type=float, default=3, help="prior: throughput gain of the worker processes")
    ap.add_argument("--reference", default="dense", help="the config every other is compared with")
    ap.add_argument(
        "--no-snapshots",
        action="store_true",
        help="train every dense@N on its own, not from the dense run's adapter after step N",
    )
    ap.add_argument("--work", type=Path, default=Path("runs/suite"))
    ap.add_argument("--parts", type=Path, help="one CSV per finished job (default: <out stem>.parts/)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/suite_smollm2.csv"))
    ap.add_argument("--only", help=argparse.SUPPRESS)  # one job, in a worker process
    ap.add_argument("--snapshots", nargs="+", default=[], help=argparse.SUPPRESS)  # the --only job's NAME@N
    args = ap.parse_args(argv)
    args.parts = args.parts or args.out.with_name(args.out.stem + ".parts")
    return args


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()  # --budget-s counts from here: making the data is part of the device call
    args = parse_args(argv)
    if args.only:
        run_job(args, args.only, provenance(argv), args.snapshots)
        return 0
    for spec in args.configs:
        parse_config(spec, args.steps)  # refuse a typo before any work
    suite_config(args)  # and a bad --suite
    args.parts.mkdir(parents=True, exist_ok=True)
    pending = [j for j in jobs_of(args) if not part_path(args.parts, j).exists()]
    plan = snapshot_plan(args, pending)
    covered = set(covered_jobs(plan))
    jobs = [j for j in pending if j not in covered]
    write_data(args)  # before anything touches CUDA: it forks the processes that make the data
    env = provenance(argv)
    clock = Clock(args, t0, plan)
    total = sum(clock.estimate(j) for j in jobs) / max(1, min(args.workers, len(jobs)))
    print(
        f"suite: {len(jobs)} jobs to run ({len(jobs_of(args)) - len(pending)} done before, {len(covered)} "
        f"evaluated from another job's snapshot), about {clock.estimate(jobs[0]) if jobs else 0:.0f} s each "
        f"with {args.workers} workers (prior), about {total:.0f} s in all",
        flush=True,
    )
    left = launch(args, jobs, plan, clock, env, argv)
    left += covered_jobs({j: plan[j] for j in left if j in plan})  # not launched: their snapshots neither
    write_report(args.parts, args.out, FIELDS, args.reference, suite_config(args).families)
    print(
        f"suite: {len(pending) - len(left)} jobs run, {len(left)} left, in {clock.elapsed():.0f} s; {args.out}",
        flush=True,
    )
    return 0


def launch(
    args, jobs: list[str], plan: Mapping[str, Sequence[str]], clock: Clock, env: dict, argv
) -> list[str]:
    """Run `jobs` in worker processes within --budget-s, the report rebuilt as each ends; returns the jobs
    not launched."""

    def may_launch(job: str) -> bool:
        est = clock.estimate(job)
        if args.budget_s and clock.elapsed() + est > args.budget_s:
            print(
                f"budget: {job} (about {est:.0f} s) would end after --budget-s {args.budget_s:.0f}; stopping "
                "here. Run the same command again to resume.",
                flush=True,
            )
            return False
        print(f"launch {job}: about {est:.0f} s, at {clock.elapsed():.0f} s", flush=True)
        return True

    def on_done(job: str, rc: int, seconds: float) -> None:
        if rc == 0:
            clock.record(job, seconds)
        write_report(args.parts, args.out, FIELDS, args.reference, suite_config(args).families)

    def command(job: str) -> list[str]:
        snaps = ["--snapshots", *plan[job]] if plan.get(job) else []
        return [*base, "--only", job, *snaps]

    base = [sys.executable, sys.argv[0], *(argv if argv is not None else sys.argv[1:])]
    return run_workers(jobs, command, args.workers, {"LEMO_COMMIT": env["commit"]}, on_done, may_launch)


SIZING_SEEDS = (0, 1)  # a variant's seeds when the sizing file gives none
SIZING_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a variant's name names its files


def sizing_plan(path: Path) -> list[tuple[str, str, list[int]]]:
    """The variants of a sizing file: (name, --suite JSON, seeds), in the file's order.

    The file maps a name to SuiteConfig knobs over a preset (v2 unless "preset" says), plus an optional "seeds"
    list; a key starting with "_" is a note. Every variant is checked here, so a typo fails before any work."""
    plan = []
    for name, entry in json.loads(path.read_text()).items():
        if name.startswith("_"):
            continue
        if not SIZING_NAME.fullmatch(name) or not isinstance(entry, dict):
            raise SystemExit(
                f"{path}: variant {name!r} must be a plain name (letters, digits, _.-) -> {{knobs}}"
            )
        knobs = {k: v for k, v in entry.items() if k != "seeds"}
        seeds = entry.get("seeds", list(SIZING_SEEDS))
        if not seeds or not all(isinstance(x, int) and x >= 0 for x in seeds):
            raise SystemExit(f"{path}: variant {name!r} has seeds {seeds!r}: give a list of integers >= 0.")
        suite = json.dumps(knobs, sort_keys=True)
        try:
            suite_config(argparse.Namespace(suite=suite))
        except (TypeError, ValueError) as e:  # an unknown knob, or a value SuiteConfig refuses
            raise SystemExit(f"{path}: variant {name!r}: {e}") from e
        plan.append((name, suite, seeds))
    if not plan:
        raise SystemExit(f"{path} lists no variant.")
    return plan


def _cell(row: Mapping[str, str] | None) -> str:
    """ "0.80±.02" (the mean and its standard error over seeds); the error is left out for one seed."""
    if row is None:
        return "-"
    mean, se = float(row["mean"]), float(row["se"] or "nan")
    return f"{mean:.2f}" + ("" if math.isnan(se) else f"±{se:.2f}".replace("0.", "."))


def sizing_table(
    summaries: Mapping[str, Path], length: int, metric: str, config: str = "dense", form: str = "sup"
) -> str:
    """One line per variant (its summary CSV), one column per family and the suite mean: `metric` at
    `length` of `config` in `form`. A variant without results (it failed, or ran out of time) shows "-"."""
    columns = [*FAMILIES, "suite"]
    lines = [f"{metric} @ {length}", f"{'variant':<14}{'seeds':>6}" + "".join(f"{c:>12}" for c in columns)]
    for name, path in summaries.items():
        rows = list(csv.DictReader(path.open())) if path.exists() else []
        cells = {
            r["family"]: r
            for r in rows
            if (r["config"], r["form"], r["metric"], r["eval_len"]) == (config, form, metric, str(length))
        }
        seeds = max((r["seeds"] for r in cells.values()), default="-")
        lines.append(f"{name:<14}{seeds:>6}" + "".join(f"{_cell(cells.get(c)):>12}" for c in columns))
    return "\n".join(lines)


# One wording, families from hardest to easiest: the rungs `sizing choose` mixes.
LADDER = ("D_both", "E_easy", "F_easiest")
GLOBAL_KNOBS = ("families", "train_phrasings", "shared_lead", "held_out_phrasing")


def _dense_exact(path: Path, length: int) -> dict[str, float]:
    """family -> dense LoRA's mean exact match at `length` (form sup), from a variant's summary CSV."""
    rows = list(csv.DictReader(path.open())) if path.exists() else []
    cell = ("dense", "sup", "exact_match", str(length))
    return {
        r["family"]: float(r["mean"])
        for r in rows
        if (r["config"], r["form"], r["metric"], r["eval_len"]) == cell
    }


def _pick(scores: Sequence[tuple[str, float]], lo: float, hi: float) -> str:
    """The hardest rung whose score is in [lo, hi]; else the hardest if every rung is above, else the best."""
    inside = [name for name, v in scores if lo <= v <= hi]
    if inside:
        return inside[0]
    if all(v > hi for _, v in scores):
        return scores[0][0]
    return min(scores, key=lambda nv: abs(nv[1] - (lo + hi) / 2))[0]


def choose_knobs(
    results: Path, plan: Path, length: int = 16384, lo: float = 0.4, hi: float = 0.9, ladder=LADDER
) -> tuple[dict, dict[str, str]]:
    """The suite knobs that size every family: per family, the hardest rung of `ladder` (variants sharing one
    wording, hardest first) where dense LoRA's exact match at `length` lies in [lo, hi]. A family's knobs are
    those named after it (kv_pairs -> kv); the wording comes from the first rung. Returns (knobs, family ->
    rung). A rung without results (failed, out of time) is passed over."""
    variants = {name: json.loads(suite) for name, suite, _ in sizing_plan(plan)}
    missing = [r for r in ladder if r not in variants]
    if missing:
        raise SystemExit(f"{plan}: the ladder's variants {missing} are not in it.")
    knobs = {k: v for k, v in variants[ladder[0]].items() if k in GLOBAL_KNOBS or k == "preset"}
    scores = {r: _dense_exact(results / f"{r}_summary.csv", length) for r in ladder}
    chosen = {}
    for family in FAMILIES:
        rungs = [(r, scores[r][family]) for r in ladder if family in scores[r]]
        chosen[family] = _pick(rungs, lo, hi) if rungs else ladder[0]
        knobs.update({k: v for k, v in variants[chosen[family]].items() if k.startswith(family + "_")})
    return knobs, chosen


def sizing_main(argv: list[str]) -> int:
    """`sizing plan FILE`: one tab-separated line per variant (name, --suite JSON, seeds), for the shell.
    `sizing table RESULTS`: exact match and answer-token accuracy per variant, family and length, from the
    `<name>_summary.csv` files in RESULTS, in the order of --plan (default: the names' order)."""
    ap = argparse.ArgumentParser(prog="suite.py sizing")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("plan").add_argument("file", type=Path)
    table = sub.add_parser("table")
    table.add_argument("results", type=Path)
    table.add_argument("--plan", type=Path, help="the sizing file: its variants, in its order")
    table.add_argument("--lengths", type=int, nargs="+", default=[16384])
    choose = sub.add_parser("choose", help="print the knobs (JSON) that size every family, from RESULTS")
    choose.add_argument("results", type=Path)
    choose.add_argument("--plan", type=Path, required=True)
    choose.add_argument("--length", type=int, default=16384)
    args = ap.parse_args(argv)
    if args.command == "choose":
        knobs, chosen = choose_knobs(args.results, args.plan, args.length)
        print("sizing: " + ", ".join(f"{f} from {r}" for f, r in chosen.items()), file=sys.stderr)
        print(json.dumps(knobs, sort_keys=True))
        return 0
    if args.command == "plan":
        for name, suite, seeds in sizing_plan(args.file):
            print(name, suite, " ".join(map(str, seeds)), sep="\t")
        return 0
    if args.plan:
        names = [name for name, _, _ in sizing_plan(args.plan)]
    else:
        names = sorted(p.name.removesuffix("_summary.csv") for p in args.results.glob("*_summary.csv"))
    summaries = {n: args.results / f"{n}_summary.csv" for n in names}
    for length in args.lengths:
        for metric in ("exact_match", "token_accuracy"):
            print(sizing_table(summaries, length, metric), end="\n\n")
    return 0


if __name__ == "__main__":
    sys.exit(sizing_main(sys.argv[2:]) if sys.argv[1:2] == ["sizing"] else main())
