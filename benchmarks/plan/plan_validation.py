"""`lemo plan` against the committed benchmark rows: predicted vs measured GPU peak and step time.

    python benchmarks/plan/plan_validation.py            # writes benchmarks/results/plan_validation.csv
    python benchmarks/plan/plan_validation.py --fit      # also refits the step-time rates and prints them

Every row of the e2e step CSVs (benchmarks/e2e/bench.py) whose configuration the planner models is predicted
from the row's own settings (shape, T, keep ratio, backend, completion) through lemo bench's CONFIGS, so the
planner sees exactly what the benchmark ran. Longest-T rows are checked twice: the peak at the longest T that
ran, and the longest T the plan allows under the same cap.
"""

from __future__ import annotations

import argparse
import csv
import functools
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from lemo.bench.configs import CONFIGS  # noqa: E402
from lemo.config import SparsityConfig  # noqa: E402
from lemo.plan import PlanConfig, longest_seq_len, predict  # noqa: E402
from lemo.plan.core import _estimate  # noqa: E402
from lemo.plan.memory import estimate  # noqa: E402
from lemo.plan.shapes import SHAPES  # noqa: E402
from lemo.plan.time import H200, Rates, work  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
STEP_FILES = [
    "e2e_llama3_8b.csv",
    "e2e_llama3_8b_shared.csv",
    "e2e_llama3_8b_ablation.csv",
    "e2e_llama3_8b_sweep.csv",
    "e2e_llama3_8b_capability.csv",
    "e2e_llama2_7b_sweep.csv",
    "e2e_llama2_7b_predictors.csv",
    "e2e_reference_path.csv",
    "e2e_smollm2.csv",
    "e2e_llama3_8b_offload.csv",  # not in the rate fit (`--fit` was run before it existed): out of sample
    "e2e_llama3_8b_liger.csv",  # backward elimination (and Liger rows, not modelled): out of sample
]
LONGEST_FILES = [
    "e2e_llama3_8b_longest.csv",
    "e2e_llama2_7b_longest.csv",
    "e2e_llama3_8b_offload_longest.csv",
]
# Commits before 0edd534 ("sparsity-aware checkpointing, in-place residual"): their checkpointed sparse layers
# stored the whole layer input; the planner models the code since. Their lemo rows are shown, not scored.
PRE_KEPT_ROWS = {"61d4f5a", "19c45cb", "2ececb5", "9c1162c"}
# Backward elimination measured before aafab6b ran the kept queries' attention as one SDPA call per run of kept
# rows; the planner times the Triton kernel that replaced it. Their peaks are scored, their step times shown
# beside the plan's (the gap is the old kernel's), not scored and not fitted.
PRE_QUERY_KERNEL = {"cd5902a"}
H200_GIB = 139.7  # what the steps-mode rows ran under (no cap): the card's memory
FIELDS = [
    "kind",
    "file",
    "config",
    "shape",
    "seq_len",
    "keep_ratio",
    "commit",
    "measured_peak_gib",
    "predicted_peak_gib",
    "peak_err_pct",
    "measured_step_s",
    "predicted_step_s",
    "step_err_pct",
    "predicted_phase",
    "scored",
    "note",
]


def unmodelled(name: str) -> str | None:
    """Why the planner does not model lemo bench's configuration `name`, or None when it does."""
    extra = CONFIGS[name][4]
    if extra.get("s2") or CONFIGS[name][0] == "sparse":
        return "not modelled (S2 attention or sparse-only checkpointing)"
    return None


# Defaults that changed: the token the first commit with the new behaviour names in its message, and the options
# a row measured before it ran with, whatever its config says today.
#  - lemo-share-lora-inputs: PEFT's adapters on their bf16 inputs (`share_lora_inputs`); before, PEFT's fp32 copies;
#  - lemo-sdpa-attention: the layers' attention through SDPA (`attention_kernel="auto"`); before, lemo's kernel.
CHANGED_SINCE = {
    "lemo-share-lora-inputs": {"share_lora_inputs": False},
    "lemo-sdpa-attention": {"attention_kernel": "lemo"},
    "lemo-free-input-leaf": {"free_input_leaf": False},
}


@functools.cache
def _git(*args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    except OSError:  # no git
        return None


@functools.cache
def descends_from(token: str, commit: str) -> bool:
    """Whether `commit` is a descendant of the oldest commit whose message names `token` (no: unknown commits,
    or no git)."""
    found = _git("log", "--reverse", "--format=%H", f"--grep={token}")
    since = found.stdout.split()[0] if found is not None and found.stdout.split() else ""
    if not commit or not since:
        return False
    run = _git("merge-base", "--is-ancestor", since, commit)
    return run is not None and run.returncode == 0


def options_before(commit: str) -> dict:
    """The options a row measured at `commit` ran with in place of today's defaults (`CHANGED_SINCE`)."""
    old: dict = {}
    for token, options in CHANGED_SINCE.items():
        if not descends_from(token, commit):
            old.update(options)
    return old


def plan_config(
    name: str,
    shape: str,
    T: int,
    keep: float,
    backend: str,
    completion: float,
    tile: int = 8192,
    commit: str | None = None,
) -> PlanConfig | None:
    """The PlanConfig of lemo bench's configuration `name` (None for the ones the planner does not model).
    `commit`: the row's, for a row measured before a default changed (None: the config as it is now)."""
    if unmodelled(name):
        return None
    checkpointing, segmented, sparse, mlp, extra = CONFIGS[name]
    extra = dict(extra)
    if commit is not None:
        extra.update(options_before(commit))
    if extra.get("tile_tokens") == "tile":
        extra["tile_tokens"] = tile
    backend = extra.pop("backend", backend)
    liger = extra.pop("liger", False)
    lemo_applied = bool(
        sparse or segmented or set(extra) - {"trim_last_layer", "share_lora_inputs", "attention_kernel"}
    )
    if sparse:
        base = dict(keep_ratio=keep, sparse_layers="auto", mlp=mlp, backend=backend, segmented_loss=segmented)
        sparsity = SparsityConfig.paper(**{**base, **extra})  # a config's own options win, as in configure()
    elif lemo_applied:
        # exact (+offload, +tiled): elimination off, bench's extra options (offload, tiling) on top; Liger's exact
        # stacks keep Liger's fused loss (no segmented loss, so no "kept" positions to choose)
        loss = {} if segmented else {"loss_tokens": "all"}
        sparsity = SparsityConfig(
            sparse_layers="none", segmented_loss=segmented, backend=backend, **loss, **extra
        )
    else:
        sparsity = SparsityConfig()
    return PlanConfig(
        shape=shape,
        seq_len=T,
        sparse=lemo_applied,
        liger=liger,
        sparsity=sparsity,
        gradient_checkpointing=checkpointing == "all",
        labelled_fraction=completion if completion > 0 else 1.0,
        host_gib=1e6,
    )


def _num(row: dict, key: str) -> float | None:
    v = row.get(key, "")
    return float(v) if v not in ("", None) else None


def _err(pred: float, meas: float | None) -> str:
    return "" if meas is None else f"{100 * (pred - meas) / meas:+.1f}"


def step_rows() -> list[tuple[dict, PlanConfig]]:
    out = []
    for name in STEP_FILES:
        with (RESULTS / name).open() as fh:
            for row in csv.DictReader(fh):
                cfg = plan_config(
                    row["config"],
                    row["shape"],
                    int(row["seq_len"]),
                    float(row["keep_ratio"]),
                    row.get("backend") or "auto",
                    _num(row, "completion") or 0.0,
                    int(_num(row, "tile_tokens") or 8192),
                    row.get("commit") or "",
                )
                out.append(({**row, "file": name}, cfg))
    return out


def fit_rates(rows: list[tuple[dict, PlanConfig]]) -> Rates:
    """Least squares on relative error: minimise sum ((w . rates - t) / t)^2 over the scored rows, rates >= 0."""
    X, y = [], []
    for row, cfg in rows:
        t = _num(row, "median_step_s")
        if (
            cfg is None
            or row["status"] != "ok"
            or t is None
            or _stale(row, cfg)
            or _old_query_kernel(row, cfg)
        ):
            continue
        w = work(SHAPES[cfg.shape], cfg, estimate(SHAPES[cfg.shape], cfg)).vector()
        X.append([v / t for v in w])
        y.append(1.0)
    A, b = np.array(X), np.array(y)
    active = list(range(A.shape[1]))
    while True:  # non-negative least squares by dropping negative terms (4 unknowns: this terminates fast)
        sol = np.zeros(A.shape[1])
        sol[active] = np.linalg.lstsq(A[:, active], b, rcond=None)[0]
        if (sol >= 0).all():
            return Rates(*map(float, sol))
        active = [i for i in active if sol[i] > 0]


def _stale(row: dict, cfg: PlanConfig) -> bool:
    return cfg.sparse and cfg.sparsity.sparse_layers != "none" and row.get("commit") in PRE_KEPT_ROWS


def _old_query_kernel(row: dict, cfg: PlanConfig) -> bool:
    return cfg.sparse and cfg.sparsity.elimination == "backward" and row.get("commit") in PRE_QUERY_KERNEL


def validate(rates: Rates) -> list[dict]:
    table = []
    for row, cfg in step_rows():
        out = {k: row.get(k, "") for k in ("file", "config", "shape", "seq_len", "keep_ratio", "commit")}
        out["kind"] = "step"
        if cfg is None:
            table.append({**out, "scored": "no", "note": unmodelled(row["config"])})
            continue
        mem, step, _, _ = _estimate(cfg, SHAPES[cfg.shape], rates)
        pred = mem.peak / 2**30
        meas, t = _num(row, "peak_alloc_gib"), _num(row, "median_step_s")
        note, scored = "", "yes"
        if row["status"] != "ok":
            fits = predict(cfg, rates=rates, advise=False, gpu_gib=H200_GIB).fits_gpu
            note = f"measured OOM on the {H200_GIB} GiB card; plan says {'fits (miss)' if fits else 'does not fit'}"
            scored = "oom-miss" if fits else "oom-ok"
        elif _stale(row, cfg):
            note, scored = "measured before 0edd534 (sparse layers stored their whole input)", "no"
        elif _old_query_kernel(row, cfg):
            note = "backward elimination before aafab6b: kept-query attention by one SDPA call per run; plan: Triton"
            scored = "peak"
        elif cfg.sparsity.backend == "reference" and cfg.sparse and cfg.sparsity.sparse_layers != "none":
            note = "reference kernels on a GPU"
        out.update(
            measured_peak_gib=f"{meas:.3f}" if meas is not None else "",
            predicted_peak_gib=f"{pred:.3f}",
            peak_err_pct=_err(pred, meas),
            measured_step_s=f"{t:.3f}" if t is not None else "",
            predicted_step_s=f"{step:.3f}",
            step_err_pct=_err(step, t),
            predicted_phase=mem.phase,
            scored=scored,
            note=note,
        )
        table.append(out)
    for name in LONGEST_FILES:
        with (RESULTS / name).open() as fh:
            for row in csv.DictReader(fh):
                T = int(row["longest_ok_T"] or 0)
                out = {
                    "kind": "longest",
                    "file": name,
                    **{k: row[k] for k in ("config", "shape", "keep_ratio", "commit")},
                }
                cfg = plan_config(
                    row["config"],
                    row["shape"],
                    max(T, 1024),
                    float(row["keep_ratio"]),
                    "auto",
                    0.0,
                    commit=row.get("commit") or "",
                )
                if cfg is None or not T:
                    table.append(
                        {**out, "seq_len": T, "scored": "no", "note": "not modelled, or nothing fit"}
                    )
                    continue
                cap = float(row["cap_gib"])
                cfg.gpu_gib = cap
                plan = predict(cfg, rates=rates, advise=False)
                # The searches ran on multiples of 8192, the lora one from 4096 (it fails at 8192).
                longest = longest_seq_len(cfg, granularity=8192 if T % 8192 == 0 else 4096)
                meas = _num(row, "peak_alloc_gib")
                oom = row["first_oom_T"]
                ok = T <= longest < int(oom) if oom else longest >= T
                out.update(
                    seq_len=T,
                    measured_peak_gib=f"{meas:.3f}",
                    predicted_peak_gib=f"{plan.gpu_peak_gib:.3f}",
                    peak_err_pct=_err(plan.gpu_peak_gib, meas),
                    measured_step_s=row["median_step_s"],
                    predicted_step_s=f"{plan.step_s:.3f}",
                    step_err_pct=_err(plan.step_s, _num(row, "median_step_s")),
                    predicted_phase=plan.phase,
                    scored="yes",
                    note=f"longest T under {cap:.1f} GiB: measured {T} (OOM at {oom}), planned {longest}"
                    + ("" if ok else " (miss)"),
                )
                table.append(out)
    return table


def summary(table: list[dict]) -> str:
    lines = []
    for what, key, counted in (
        ("GPU peak", "peak_err_pct", ("yes", "peak")),
        ("step time", "step_err_pct", ("yes",)),
    ):
        for shape in ("llama3-8b", "llama2-7b", "smollm2", None):
            errs = [
                abs(float(r[key]))
                for r in table
                if r.get("scored") in counted and r.get(key) and (shape is None or r["shape"] == shape)
            ]
            if errs:
                within = sum(e <= 10 for e in errs)
                lines.append(
                    f"{what:9} {shape or 'all':10} rows {len(errs):3}  median |err| {statistics.median(errs):5.1f}%  "
                    f"max {max(errs):5.1f}%  within 10%: {within}/{len(errs)}"
                )
    ooms = [r for r in table if r.get("scored", "").startswith("oom")]
    lines.append(f"OOM rows predicted not to fit: {sum(r['scored'] == 'oom-ok' for r in ooms)}/{len(ooms)}")
    for r in table:
        if r.get("scored") == "peak":
            lines.append(
                f"{r['config']} T={r['seq_len']}: peak {r['peak_err_pct']}%, step time {r['step_err_pct']}% "
                f"(measured {r['measured_step_s']} s with one SDPA call per run of kept rows; not scored)"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fit", action="store_true", help="refit the step-time rates on the rows and use them")
    ap.add_argument("--out", type=Path, default=RESULTS / "plan_validation.csv")
    args = ap.parse_args(argv)
    rates = H200
    if args.fit:
        rates = fit_rates(step_rows())
        print(f"fitted: {rates}")
    table = validate(rates)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(table)
    print(summary(table))
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
