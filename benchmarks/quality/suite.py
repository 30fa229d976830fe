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
import json
import os
import pickle
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from common import (  # benchmarks/quality/common.py, beside this script
    adapter_snapshots,
    gpu_worker_cap,
    job_gib,
    load_eval_model,
    provenance,
    run_workers,
    setup_config,
    snapshot_dir,
    timed_finetune,
)

# The tests and the scripts beside this one use the suite's names from this module: those it does not use
# itself are re-exported (noqa: F401).
from suite_data import (
    _tokenizer,
    check_stamp,  # noqa: F401
    write_data,
)
from suite_hooks import evidence_hooks, kept_rows  # beside this script too
from suite_jobs import (
    CONFIGS,
    EVIDENCE,  # noqa: F401
    FIELDS,
    FORMS,
    Clock,
    covered_jobs,
    job_name,
    jobs_of,
    parse_config,
    part_path,
    snapshot_plan,
    suite_config,
    suite_json,
)
from suite_report import write_report
from suite_sizing import (
    choose_knobs,  # noqa: F401
    sizing_main,
    sizing_plan,  # noqa: F401
    sizing_table,  # noqa: F401
)

from lemo.assets import austen_split
from lemo.eval.answer_kinds import kind_accuracy, token_kinds
from lemo.eval.capability import score_samples
from lemo.eval.perplexity import perplexity
from lemo.train.loop import FinetuneResult

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the data is made in forked processes
# SmolLM2's native context (it runs at 16K through YaRN x2): evidence further back than this from the answer is
# read through the extension, which distance_rows scores apart.
FAR_TOKENS = 8192


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
    rows += distance_rows(samples, res.samples)
    rows += kind_rows(samples, res.samples, tok)
    held = torch.tensor(tokenize_documents([austen_split()[1]], tok)[0])
    for n in args.ppl_lengths:
        r = perplexity(model, held, context=n, stride=n, max_windows=args.ppl_windows)
        rows.append(dict(metric="ppl", family="-", eval_len=n, value=r.ppl, n=r.tokens))
    return rows


def distance_rows(samples: Sequence, outcomes: Sequence) -> list[dict]:
    """Exact match per family and length apart for questions whose evidence starts within FAR_TOKENS of the
    answer ("exact_match_near") and further back ("exact_match_far"): whether a family's misses are distance."""
    cells = defaultdict(list)
    for s, o in zip(samples, outcomes, strict=True):
        far = len(s.prompt_ids) - s.needle_pos > FAR_TOKENS
        cells[(o.task, o.length, "exact_match_far" if far else "exact_match_near")].append(o.correct)
    return [
        dict(metric=metric, family=family, eval_len=length, value=sum(hits) / len(hits), n=len(hits))
        for (family, length, metric), hits in sorted(cells.items())
    ]


def kind_rows(samples: Sequence, outcomes: Sequence, tok) -> list[dict]:
    """Answer-token accuracy per family and length apart for a value's first character ("value_start_accuracy":
    finding it) and its later ones ("value_rest_accuracy": copying it), lemo.eval.answer_kinds: whether a family's
    misses are the lookup."""
    cells = defaultdict(lambda: ([], []))
    for s, o in zip(samples, outcomes, strict=True):
        kinds, hits = cells[(o.task, o.length)]
        kinds.append(token_kinds([tok.decode([t]) for t in s.answer_ids]))
        hits.append(o.hits)
    rows = []
    for (family, length), (kinds, hits) in sorted(cells.items()):
        for kind, (acc, n) in kind_accuracy(kinds, hits).items():
            if kind in ("value_start", "value_rest"):
                rows.append(dict(metric=f"{kind}_accuracy", family=family, eval_len=length, value=acc, n=n))
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
    ap.add_argument(
        "--workers", type=int, default=8, help="at most; lowered to what the GPU's free memory holds"
    )
    ap.add_argument(
        "--job-gib",
        type=float,
        help="GPU memory one job needs (default: 11 GiB at 16K, scaled with --seq-len)",
    )
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
    args.workers = gpu_worker_cap(args.workers, args.job_gib or job_gib(args.seq_len))
    env = provenance(argv)
    clock = Clock(args, t0, plan)
    # A resumed call learns from the jobs earlier calls finished: the prior overestimated the 2026-12-05 jobs
    # about twofold, which made one call launch nothing.
    measured = clock.seed_from_parts(args.parts)
    total = sum(clock.estimate(j) for j in jobs) / max(1, min(args.workers, len(jobs)))
    basis = f"measured on {measured} finished jobs" if measured else "prior"
    print(
        f"suite: {len(jobs)} jobs to run ({len(jobs_of(args)) - len(pending)} done before, {len(covered)} "
        f"evaluated from another job's snapshot), about {clock.estimate(jobs[0]) if jobs else 0:.0f} s each "
        f"with {args.workers} workers ({basis}), about {total:.0f} s in all",
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


if __name__ == "__main__":
    sys.exit(sizing_main(sys.argv[2:]) if sys.argv[1:2] == ["sizing"] else main())
