"""The suite's configs and jobs (docs/suite.md): the configs a job may name, a job's name and part file, the jobs
a call runs, which NAME@N jobs a full job covers with its snapshots, the --suite knobs, and the per-job time
estimates for --budget-s. suite.py runs the jobs, and its callers import these names from it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from lemo.config import SuiteConfig

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
    # the default with its last 20% of steps dense (SparsityConfig.dense_tail, random-LTD's schedule ending dense):
    # for plain-text perplexity, which the kept-position loss leaves 1.8% above dense's on v6
    "tail20": {"keep_ratio": 0.5, "dense_tail": 0.2},
    # a longer tail: tail20 reached 1.011x dense's perplexity on v7, the target is 1.01x; a quarter of the steps is the
    # most the 0.75x step target allows at 32K (0.749x, composed from e2e_llama3_8b_tail.csv; 0.776x at 16K). Not run
    "tail25": {"keep_ratio": 0.5, "dense_tail": 0.25},
    # the default with each block ranked by the best score within one block on either side
    # (SparsityConfig.score_dilation): v7's recall gap (a quote and the passage after it), issue 19
    "dilate1": {"keep_ratio": 0.5, "score_dilation": 1},
    # the default with the context blocks that the labels copy 3-grams from kept after the labelled ones
    # (SparsityConfig.copy_ngram): a lexical copy-source marker for recall's quote and answer, issue 19. Measured
    # with the plain-text tier on (copy_plain_text, off in SparsityConfig() since), as are the two below
    "copy3": {"keep_ratio": 0.5, "copy_ngram": 3, "copy_plain_text": True},
    # copy3 with tail20's dense last 20% of steps: whether the copy tier and the tail together reach dense's
    # plain-text perplexity (tail20 alone: 1.0104x on v7)
    "copy3-tail20": {"keep_ratio": 0.5, "copy_ngram": 3, "copy_plain_text": True, "dense_tail": 0.2},
    # a shorter tail: copy3-tail20's plain-text step composes to 0.758x Liger exact's at 32K, above 0.75x
    "copy3-tail15": {"keep_ratio": 0.5, "copy_ngram": 3, "copy_plain_text": True, "dense_tail": 0.15},
    # the default at keep 0.6 (the copy tier on prompt/completion rows only, as SparsityConfig()'s): more of every
    # step kept instead of copy3-tail15's dense last steps, at about the same step time (suite v14 ran the default
    # at 0.910x dense LoRA's exact match at equal steps; docs/suite.md's v14 plan)
    "copy3-keep60": {"keep_ratio": 0.6, "copy_ngram": 3},
    # the plain-text tier keeping both ends of each far repeat (SparsityConfig.copy_repeats): the sources alone
    # left the rows' ends to chance (selection_bias_copy3_multikey_cpu.csv), issue 19
    "copy3r": {"keep_ratio": 0.5, "copy_ngram": 3, "copy_plain_text": True, "copy_repeats": True},
    "copy3r-tail15": {
        "keep_ratio": 0.5,
        "copy_ngram": 3,
        "copy_plain_text": True,
        "copy_repeats": True,
        "dense_tail": 0.15,
    },
    "oracle": {"elimination": "backward", "random_fraction": 1.0, "keep_ratio": 0.6, EVIDENCE: True},
    # the fast mode's upper bound: forward elimination (the default's) with the evidence blocks kept first
    "oracle-forward": {"random_fraction": 1.0, "keep_ratio": 0.6, EVIDENCE: True},
    # the default (supervision scorer, keep 0.5) with the evidence blocks kept first: what today's selector would
    # score if it always found the evidence. oracle-forward fills the rest of the budget at random and scored
    # below the supervision selector on v3, so it bounds nothing the default does.
    "oracle-default": {EVIDENCE: True},
    # oracle-default with tail20's dense last 20% of steps: the upper bound for a default that ends dense
    "oracle-tail20": {EVIDENCE: True, "dense_tail": 0.2},
}
# The configs above were measured before copy_ngram=3 became SparsityConfig()'s (2026-12-06), so each keeps the
# selection it was measured with: no copy tier unless it names one. "default" alone follows SparsityConfig().
for _name, _fields in CONFIGS.items():
    if _fields is not None and _name != "default":
        _fields.setdefault("copy_ngram", 0)
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

    def seed_from_parts(self, parts: Path) -> int:
        """Record the measured time of every job an earlier call finished in `parts` (their part files'
        `job_s`), whatever its config or form, so a resumed call, or one that runs the other form after the
        first, estimates from what ran rather than from the prior; returns how many it used. A NAME@N part's
        time is its snapshot's evaluation alone, so it is not a job of its own: it adds an evaluation to the
        NAME job of its form and seed."""
        firsts = {}
        for path in sorted(parts.glob("*.csv")) if parts.is_dir() else []:
            with path.open(newline="") as fh:
                first = next(csv.DictReader(fh), None)
            if first and first.get("job_s") and first.get("config"):
                firsts[job_name(first["config"], first["form"], first["seed"])] = first
        keys = [(f["config"], (f["form"], f["seed"])) for f in firsts.values()]
        for (name, rest), first in zip(keys, firsts.values()):
            if "@" in name:
                continue
            evals = 1 + sum(1 for n, r in keys if r == rest and n.startswith(name + "@"))
            units = float(first.get("steps") or 0) + evals * self.args.eval_s / max(self.args.step_s, 1e-9)
            self.done.append((float(first["job_s"]), units))
        return sum(1 for name, _ in keys if "@" not in name)

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
