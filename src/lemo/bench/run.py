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
(also `python benchmarks/e2e/bench.py ...` in a source checkout). --mode longest searches the largest T under
the cap (per-process memory fraction). Under torchrun the model is sharded with FSDP2 (lemo.bench.sharded).
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata as md
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from lemo.bench.configs import CONFIGS
from lemo.bench.model import SHAPES, build_model, check_model_dir, shape_name
from lemo.bench.sharded import join, shard_model, weights_gib_per_gpu
from lemo.bench.step import MATMUL_RATE, longest_length, matmul_rate, probe
from lemo.config import SparsityConfig

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
        "commit": os.environ.get("LEMO_COMMIT", "unknown"),
    }


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


def _append(path: Path, fields: list[str], row: dict) -> None:
    # One row at a time: a run cut short by a time limit keeps everything measured so far. An existing file keeps
    # its own columns (older CSVs lack the newest ones), so its rows stay aligned.
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


def parse_args(argv: list[str] | None, prog: str | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); `prog` names the command in usage lines (None: the script)."""
    ap = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    model = ap.add_mutually_exclusive_group()
    model.add_argument("--shape", choices=sorted(SHAPES), default="llama2-7b")
    model.add_argument(
        "--model",
        metavar="DIR",
        default=None,
        help="benchmark this local HF model directory (its real weights, the same LoRA) instead of a --shape; "
        "the CSV's shape column records the directory's name",
    )
    ap.add_argument("--lengths", type=int, nargs="+", default=[8192, 16384])
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["lora", "lemo"])
    ap.add_argument(
        "--mode",
        choices=["steps", "longest"],
        default="steps",
        help="steps: one row per (config, T); longest: search the largest T that fits under --cap-gib",
    )
    ap.add_argument(
        "--cap-gib",
        type=float,
        default=None,
        help="GPU memory cap in GiB (--mode longest default: 80 GB = 74.5 GiB; steps mode: none unless given)",
    )
    ap.add_argument("--granularity", type=int, default=8192, help="longest-T search resolution (tokens)")
    ap.add_argument("--search-start", type=int, default=8192)
    ap.add_argument("--search-max", type=int, default=1 << 20)
    ap.add_argument(
        "--budget-s", type=float, default=0, help="start no new run after this many seconds (0: none)"
    )
    # The product's defaults (SparsityConfig()), read from the dataclass so the two never drift apart.
    product = SparsityConfig()
    ap.add_argument(
        "--keep-ratio",
        type=float,
        default=product.keep_ratio,
        help="kept fraction of the lemo configs (default: SparsityConfig's, %(default)s)",
    )
    ap.add_argument("--backend", default=product.backend, choices=["auto", "reference", "triton"])
    ap.add_argument("--tile-tokens", type=int, default=8192, help="MLP tile rows of the +tiled configs")
    ap.add_argument(
        "--probe-lengths",
        type=int,
        nargs="+",
        default=[],
        help="--mode longest: probe exactly these T (e.g. a plan's prediction and one step above) instead of "
        "doubling and bisecting",
    )
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument(
        "--warmup-layers",
        choices=["all", "few"],
        default="all",
        help="few: warm-up steps run through one dense and one sparse layer only (compiling and autotuning at "
        "the step's shapes), for long T where a full step fills the time there is; the timed step then also "
        "pays for growing the host pool",
    )
    ap.add_argument(
        "--completion",
        type=float,
        default=0.0,
        help="supervise only the last fraction of each row, as prompt/completion data does (0: every position)",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/e2e.csv"))
    return ap.parse_args(argv)


def _command(argv: list[str] | None, prog: str | None) -> str:
    """The command line as the user typed it, for the CSV's `command` column."""
    words = argv if argv is not None else sys.argv[1:]
    command = " ".join([prog, *words]) if prog else "python " + " ".join([sys.argv[0], *words])
    # Settings read from the environment change what a row measures; they go in front, as a shell would take them.
    settings = [f"{k}={os.environ[k]}" for k in MEASURED_ENV if os.environ.get(k)]
    return " ".join([*settings, command])


def _cap_memory(args: argparse.Namespace, device: torch.device) -> None:
    """Resolve --cap-gib (--mode longest's default) and hold the GPU to it."""
    if args.cap_gib is None and args.mode == "longest":
        args.cap_gib = 80.0 * 1e9 / 2**30
    if device.type == "cuda" and args.cap_gib is not None:
        total = torch.cuda.get_device_properties(device).total_memory
        # The cap holds on a larger card too: the caching allocator refuses to grow past this fraction.
        torch.cuda.set_per_process_memory_fraction(
            min(1.0, args.cap_gib * 2**30 / total), torch.cuda.current_device()
        )


def _step_row(row: dict, model, name: str, T: int, args: argparse.Namespace, device: torch.device) -> None:
    """Fill `row` with one (config, T) measurement of --mode steps."""
    mlp = CONFIGS[name][3] or "dense"
    row.update(
        seq_len=T,
        backend=CONFIGS[name][4].get("backend", args.backend),
        mlp=mlp + ("/shared/kept" if CONFIGS[name][4].get("loss_tokens") == "kept" else ""),
    )
    row.update(probe(model, name, T, args, device), completion=args.completion)
    if CONFIGS[name][4].get("tile_tokens"):
        row["tile_tokens"] = args.tile_tokens


def _run_all(model, args: argparse.Namespace, device: torch.device, world, shape: str, common: dict) -> int:
    """Every (T, config) of the command line, one row each appended to --out; the exit code.

    `common` holds the columns every row shares (cap, world size, weights, environment, timestamp, command).
    """
    start = time.perf_counter()
    lengths = sorted(args.lengths) if args.mode == "steps" else [0]
    out_of_memory: set[str] = set()  # "until out of memory": a config that OOMed is not tried at longer T
    for T in lengths:
        for name in args.configs:
            if name in out_of_memory:
                continue
            if args.budget_s and time.perf_counter() - start > args.budget_s:
                print(f"time budget of {args.budget_s:.0f} s spent; skipping the rest", flush=True)
                return 0
            sparse = CONFIGS[name][2]
            row = {"config": name, "shape": shape, "keep_ratio": args.keep_ratio if sparse else 1.0}
            row.update(common)
            if args.mode == "longest":
                row.update(longest_length(model, name, args, device), cap_gib=args.cap_gib)
                _append(args.out, LONGEST_FIELDS, row)
                _show(row, ("config", "longest_ok_T", "first_oom_T", "peak_alloc_gib", "median_step_s"))
                continue
            _step_row(row, model, name, T, args, device)
            if row["status"] != "ok":
                out_of_memory.add(name)
            if not world.is_main:
                continue  # rank 0 writes the job's row
            _append(args.out, FIELDS, row)
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


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run the benchmark of the command line `argv`, appending its rows to --out; the exit code.

    `prog` is the command as the user typed it ("lemo bench"): it names the usage line and starts the CSV's
    `command` column, so a row reproduces with what produced it. None: the script, `python SCRIPT ARGS`.
    A --model that is not a model directory is a ValueError, raised before anything is measured.
    """
    args = parse_args(argv, prog)
    shape = args.shape
    if args.model is not None:
        check_model_dir(
            args.model, alternative="--shape NAME for a built-in shape (" + ", ".join(sorted(SHAPES)) + ")"
        )
        shape = shape_name(args.model)
    world, rank_device = join()
    if world.enabled and args.mode == "longest":
        raise SystemExit(
            "lemo bench: --mode longest runs in one process (an out-of-memory probe cannot be skipped while other "
            "ranks wait in the same step); run it without torchrun."
        )
    device = rank_device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    args.world = world if world.enabled else None
    env = environment()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    command = _command(argv, prog)
    _cap_memory(args, device)
    rate = matmul_rate(device)
    if rate:
        MATMUL_RATE.append(rate)
        if world.is_main:
            print(f"measured bf16 matmul rate: {rate:.0f} TFLOP/s", flush=True)
    longest = args.search_max if args.mode == "longest" else 0
    model = build_model(args.shape, device, max([*args.lengths, longest]), model_dir=args.model)
    if world.enabled:
        model = shard_model(model, world, device)
    weights = weights_gib_per_gpu(model)
    common = dict(cap_gib=args.cap_gib, world_size=world.world_size, weights_gib_per_gpu=weights)
    common.update(env, timestamp=stamp, command=command)
    return _run_all(model, args, device, world, shape, common)


if __name__ == "__main__":
    sys.exit(main())
