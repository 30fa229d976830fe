"""End-to-end training-step benchmark: peak memory, step time and longest trainable T of LoRA fine-tuning.

Configurations (design.md section 5; `CONFIGS` below), all HF + PEFT LoRA r=8, alpha=16 on q/k/v/o, bf16, batch 1:
    lora          no gradient checkpointing, the model's own loss (SDPA attention)
    lora+gc       HF gradient checkpointing
    exact         lora+gc plus lemo's segmented loss (HF + PEFT)
    liger-exact   lora+gc on Liger-Kernel (fused RoPE, RMSNorm, SwiGLU, linear cross-entropy): the strongest
                  exact stack from public parts, what `use_liger_kernel=True` gives (needs lemo[liger])
    liger-*       every exact and lemo config again on the Liger-patched model (lemo keeps its own loss)
    longlora      lora with LongLoRA's shifted sparse attention (group T/4, half the heads shifted)
    lemo*         lemo on top of lora (no +gc) or of exact (+gc); +sgc checkpoints only the sparse layers
    abl-*         lemo-shared+gc with one part switched off (ablation)
Llama shapes use random-init weights: speed and memory do not depend on weight values, and keep ratios are
fixed, so this measures the system, not the model. "smollm2" uses the real embedded model, and --model DIR
your own (a local HF model directory; its name goes in the CSV's shape column). OOM is a result.

    lemo bench --shape llama3-8b --lengths 8192 32768 --configs exact liger-exact lemo-random+gc \\
        liger-lemo-random+gc --out benchmarks/results/e2e_llama3_8b.csv
    lemo bench --mode longest --cap-gib 74.5 --shape llama3-8b --configs exact lemo-shared+gc
    lemo bench --model ~/models/my-llama --lengths 8192 --configs exact lemo-random+gc
(also `python benchmarks/e2e/bench.py ...` in a source checkout; from Python, `benchmark(BenchConfig(...))`).
--mode longest searches the largest T under the cap (per-process memory fraction). Under torchrun the model is
sharded with FSDP2 (lemo.bench.sharded). The flags are `lemo.config.BenchConfig`'s fields.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata as md
import os
import sys
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import torch

from lemo.bench.configs import CONFIGS
from lemo.bench.model import SHAPES, build_model, check_model_dir, shape_name
from lemo.bench.sharded import join, shard_model, weights_gib_per_gpu
from lemo.bench.step import MATMUL_RATE, longest_length, matmul_rate, probe
from lemo.config import BenchConfig
from lemo.utils.argparser import add_flags, config_from_args

# Environment variables that change what a row measures: recorded in its command column when set.
MEASURED_ENV = ("PYTORCH_CUDA_ALLOC_CONF", "LEMO_HOST_GIB", "CUDA_VISIBLE_DEVICES")
# Provenance carried by every row of every CSV this script writes.
ENV_FIELDS = [
    "gpu",
    "torch",
    "cuda",
    "transformers",
    "peft",
    "triton",
    "liger_kernel",
    "commit",
    "timestamp",
    "command",
]
FIELDS = [
    "config",
    "shape",
    "seq_len",
    "keep_ratio",
    "mlp",
    "backend",
    "status",
    "peak_alloc_gib",
    "peak_reserved_gib",
    "median_step_s",
    "tokens_per_s",
    "predictor_ms_per_step",
    "predictor_share",
    "predictor_param_mib",
    "loss",
    "model_tflop_per_step",
    "achieved_tflop_per_s",
    "matmul_tflop_per_s",
    "fraction_of_matmul",
    "completion",
    "host_peak_gib",
    "host_pool_gib",
    "tile_tokens",
    "cap_gib",
    "world_size",
    "weights_gib_per_gpu",
    *ENV_FIELDS,
]


def environment() -> dict:
    def ver(pkg: str) -> str:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "none"

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {
        "gpu": gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "transformers": ver("transformers"),
        "peft": ver("peft"),
        "triton": ver("triton"),
        "liger_kernel": ver("liger-kernel"),
        "commit": os.environ.get("LEMO_COMMIT") or _git_commit(),
    }


def _git_commit() -> str:
    """The checkout's commit, "+dirty" when tracked files other than the results differ from it (a run appends
    to the committed CSVs), for a row made without LEMO_COMMIT (a device call sets that; its copy of the tree has
    no history): "unknown" outside a git checkout."""
    import subprocess

    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(here), *args], capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            raise OSError(out.stderr)
        return out.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        changed = git(
            "status", "--porcelain", "--untracked-files=no", "--", ":(top,exclude)benchmarks/results"
        )
        return head + ("+dirty" if changed else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


LONGEST_FIELDS = [
    "config",
    "shape",
    "keep_ratio",
    "cap_gib",
    "longest_ok_T",
    "first_oom_T",
    "peak_alloc_gib",
    "peak_reserved_gib",
    "median_step_s",
    "host_peak_gib",
    "probes",
    *ENV_FIELDS,
]


def append_row(path: Path, fields: list[str], row: dict) -> None:
    """Append `row` to the CSV at `path` (header `fields` when new), one row at a time: a run cut short by a time
    limit keeps everything measured so far. An existing file keeps its own columns (older CSVs lack the newest
    ones), so its rows stay aligned."""
    new = not path.exists()
    if not new:
        with path.open(newline="") as fh:
            fields = next(csv.reader(fh), None) or fields
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def _show(row: dict, keys: tuple[str, ...]) -> None:
    print(
        "  ".join(
            f"{k}={row[k]:.3f}" if isinstance(row.get(k), float) else f"{k}={row.get(k)}" for k in keys
        ),
        flush=True,
    )


def parse_args(argv: list[str] | None, prog: str | None = None) -> BenchConfig:
    """The command line (see the module docstring) as a `BenchConfig`; `prog` names the command in usage lines
    (None: the script). The flags are BenchConfig's fields (lemo.utils.argparser), the shape and config names
    checked against lemo.bench's."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_flags(parser, BenchConfig, choices={"shape": sorted(SHAPES), "configs": list(CONFIGS)})
    return config_from_args(BenchConfig, parser.parse_args(argv))


def _command(argv: list[str] | None, prog: str | None) -> str:
    """The command line as the user typed it, for the CSV's `command` column."""
    words = argv if argv is not None else sys.argv[1:]
    command = " ".join([prog, *words]) if prog else "python " + " ".join([sys.argv[0], *words])
    # Settings read from the environment change what a row measures; they go in front, as a shell would take them.
    settings = [f"{k}={os.environ[k]}" for k in MEASURED_ENV if os.environ.get(k)]
    return " ".join([*settings, command])


def _cap_memory(cfg: BenchConfig, device: torch.device) -> float | None:
    """Resolve --cap-gib (--mode longest's default), hold the GPU to it, and return it."""
    cap = cfg.cap_gib
    if cap is None and cfg.mode == "longest":
        cap = 80.0 * 1e9 / 2**30
    if device.type == "cuda" and cap is not None:
        total = torch.cuda.get_device_properties(device).total_memory
        # The cap holds on a larger card too: the caching allocator refuses to grow past this fraction.
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap * 2**30 / total), torch.cuda.current_device())
    return cap


def _step_row(row: dict, model, name: str, T: int, run: SimpleNamespace, device: torch.device) -> None:
    """Fill `row` with one (config, T) measurement of --mode steps."""
    mlp = CONFIGS[name][3] or "dense"
    row.update(
        seq_len=T,
        backend=CONFIGS[name][4].get("backend", run.backend),
        mlp=mlp + ("/shared/kept" if CONFIGS[name][4].get("loss_tokens") == "kept" else ""),
    )
    row.update(probe(model, name, T, run, device), completion=run.completion)
    if CONFIGS[name][4].get("tile_tokens"):
        row["tile_tokens"] = run.tile_tokens


def _run_all(model, run: SimpleNamespace, device: torch.device, world, shape: str, common: dict) -> int:
    """Every (T, config) of the run, one row each appended to its CSV; the exit code.

    `run` is the config's fields and the process group (`world`, None in one process), what lemo.bench.step
    reads; `common` holds the columns every row shares (cap, world size, weights, environment, timestamp,
    command).
    """
    start = time.perf_counter()
    out = Path(run.out)
    lengths = sorted(run.lengths) if run.mode == "steps" else [0]
    out_of_memory: set[str] = set()  # "until out of memory": a config that OOMed is not tried at longer T
    for T in lengths:
        for name in run.configs:
            if name in out_of_memory:
                continue
            if run.budget_s and time.perf_counter() - start > run.budget_s:
                print(f"time budget of {run.budget_s:.0f} s spent; skipping the rest", flush=True)
                return 0
            sparse = CONFIGS[name][2]
            keep = CONFIGS[name][4].get("keep_ratio", run.keep_ratio)  # a config's own keep wins
            row = {"config": name, "shape": shape, "keep_ratio": keep if sparse else 1.0}
            row.update(common)
            if run.mode == "longest":
                row.update(longest_length(model, name, run, device), cap_gib=run.cap_gib)
                append_row(out, LONGEST_FIELDS, row)
                _show(row, ("config", "longest_ok_T", "first_oom_T", "peak_alloc_gib", "median_step_s"))
                continue
            _step_row(row, model, name, T, run, device)
            if row["status"] != "ok":
                out_of_memory.add(name)
            if not world.is_main:
                continue  # rank 0 writes the job's row
            append_row(out, FIELDS, row)
            _show(
                row,
                (
                    "predictor_ms_per_step",
                    "config",
                    "seq_len",
                    "status",
                    "peak_alloc_gib",
                    "peak_reserved_gib",
                    "median_step_s",
                    "tokens_per_s",
                    "fraction_of_matmul",
                ),
            )
    return 0


def _check_names(cfg: BenchConfig) -> None:
    """Refuse config and shape names lemo.bench does not know (the flags' choices check them on the command
    line; this covers a `BenchConfig` built in Python)."""
    unknown = [name for name in cfg.configs if name not in CONFIGS]
    if unknown:
        raise ValueError(f"--configs {' '.join(unknown)}: unknown; `lemo bench --help` lists the configs.")
    if cfg.model is None and cfg.shape not in SHAPES:
        raise ValueError(
            f"--shape {cfg.shape!r} is unknown; use one of {', '.join(sorted(SHAPES))} or --model DIR."
        )


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the benchmark of the command line `argv`, appending its rows to --out; the exit code.

    `prog` is the command as the user typed it ("lemo bench"): it names the usage line and starts the CSV's
    `command` column, so a row reproduces with what produced it. None: the script, `python SCRIPT ARGS`.
    """
    return benchmark(parse_args(argv, prog), _command(argv, prog))


def benchmark(cfg: BenchConfig, command: str = "") -> int:
    """Run the benchmark `cfg` describes, appending its rows to `cfg.out`; the exit code. `command` fills the
    CSV's command column. A --model that is not a model directory is a ValueError, raised before anything is
    measured."""
    _check_names(cfg)
    shape = cfg.shape
    if cfg.model is not None:
        check_model_dir(
            cfg.model, alternative="--shape NAME for a built-in shape (" + ", ".join(sorted(SHAPES)) + ")"
        )
        shape = shape_name(cfg.model)
    world, rank_device = join()
    if world.enabled and cfg.mode == "longest":
        raise SystemExit(
            "lemo bench: --mode longest runs in one process (an out-of-memory probe cannot be skipped while other "
            "ranks wait in the same step); run it without torchrun."
        )
    device = rank_device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    env = environment()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    cap = _cap_memory(cfg, device)
    run = SimpleNamespace(**asdict(cfg), world=world if world.enabled else None)
    run.cap_gib = cap
    rate = matmul_rate(device)
    if rate:
        MATMUL_RATE.append(rate)
        if world.is_main:
            print(f"measured bf16 matmul rate: {rate:.0f} TFLOP/s", flush=True)
    longest = cfg.search_max if cfg.mode == "longest" else 0
    model = build_model(cfg.shape, device, max([*cfg.lengths, longest]), model_dir=cfg.model)
    if world.enabled:
        model = shard_model(model, world, device)
    weights = weights_gib_per_gpu(model)
    common = dict(cap_gib=cap, world_size=world.world_size, weights_gib_per_gpu=weights)
    common.update(env, timestamp=stamp, command=command)
    return _run_all(model, run, device, world, shape, common)


if __name__ == "__main__":
    sys.exit(main())
