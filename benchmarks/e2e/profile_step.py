"""Profile one warm training step per (config, T) and write where its time went (lemo.bench.profile).

    python benchmarks/e2e/profile_step.py --shape llama3-8b --lengths 32768 \\
        --configs liger-exact liger-lemo-random+gc --completion 0.02 \\
        --out benchmarks/results/profile_llama3_8b.csv --traces /tmp/traces

Each (config, T) gets a warm-up step (kernel compiles and autotuning are not the step's), then one profiled
step; the CSV gets a "step" row (step and busy time, idle time and gaps, kernel launches, host syncs), one
row per op family and a "lemo::select" row: what the selection (the selector's scoring included) cost. The
Chrome traces go to --traces (open them in https://ui.perfetto.dev). With --peak-owners
(CUDA only), one more step runs with the allocator's history on, and `<out stem>_peak.csv` gets what held the
memory at that step's peak, by the code that allocated it (lemo.bench.peak_owners); `--peak-owners CONFIG ...`
does that for the named configs only.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

from lemo.bench.configs import CONFIGS, configure
from lemo.bench.model import SHAPES, build_model
from lemo.bench.peak_owners import record_peak_owners
from lemo.bench.profile import profile_step, rows
from lemo.bench.run import append_row, environment
from lemo.bench.step import few_layers, reserve_host_pool, train_labels
from lemo.config import SparsityConfig
from lemo.sparsity.selection import PROFILE_RANGE

FIELDS = [
    "config", "shape", "seq_len", "family", "ms", "share", "count", "step_ms", "busy_ms", "idle_ms",
    "idle_share", "gaps", "gap_ms", "launches", "host_syncs", "keep_ratio", "completion",
    "gpu", "torch", "cuda", "transformers", "peft", "triton", "liger_kernel", "commit", "command",
]  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama3-8b")
    ap.add_argument("--lengths", type=int, nargs="+", default=[32768])
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["liger-exact"])
    ap.add_argument("--keep-ratio", type=float, default=SparsityConfig().keep_ratio)
    ap.add_argument("--backend", default="auto", choices=["auto", "reference", "triton"])
    ap.add_argument("--tile-tokens", type=int, default=8192)
    ap.add_argument("--completion", type=float, default=0.0, help="labelled share at the row's end (0: all)")
    ap.add_argument("--out", type=Path, required=True, help="CSV to append to")
    ap.add_argument("--traces", type=Path, default=Path("traces"), help="folder for the Chrome traces")
    ap.add_argument(
        "--peak-owners",
        nargs="*",
        metavar="CONFIG",
        default=None,
        help="also what holds the memory at the peak (CUDA), for these configs (none named: every config)",
    )
    # A 128K step with offload takes a minute: warming up through a few layers compiles and tunes the same
    # kernels at a fraction of the cost, so the profiled step fits one device call.
    ap.add_argument(
        "--warmup-layers", choices=["all", "few"], default="all", help="layers of the warm-up step"
    )
    ap.add_argument("--cap-gib", type=float, default=None, help="hold the GPU to this many GiB (74.5: 80 GB)")
    return ap.parse_args(argv)


def _step(model, ids: torch.Tensor, labels: torch.Tensor, opt: torch.optim.Optimizer):
    def step() -> None:
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(args.shape, device, max(args.lengths))
    if device.type == "cuda" and args.cap_gib is not None:
        # The cap as `lemo bench --cap-gib` holds it: offload and tiling must fit the 80 GB card's memory.
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.cap_gib * 2**30 / total))
    env = {**environment(), "command": " ".join(sys.argv)}
    for name in args.configs:
        configure(model, name, args.keep_ratio, args.backend, args.tile_tokens)
        for T in args.lengths:
            ids = torch.randint(0, model.config.vocab_size, (1, T), device=device)  # [1, T]
            labels = train_labels(ids, args.completion)  # [1, T]
            opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
            # warm: kernel compiles and autotuning are not the step's
            with few_layers(model) if args.warmup_layers == "few" else contextlib.nullcontext():
                _step(model, ids, labels, opt)()
            if args.warmup_layers == "few":
                reserve_host_pool(model, device)  # the profiled step reuses the host pool, as later steps do
            trace = args.traces / f"{args.shape}_{name}_{T}.json"
            summary = profile_step(_step(model, ids, labels, opt), trace, cuda=device.type == "cuda")
            keys = dict(config=name, shape=args.shape, seq_len=T, keep_ratio=args.keep_ratio)
            for row in rows(summary, **keys, completion=args.completion):
                append_row(args.out, FIELDS, {**row, **env})
            select = summary["ranges"].get(PROFILE_RANGE, {"ms": 0.0, "share": 0.0})
            print(
                f"{name} T={T}: step {summary['step_ms']:.0f} ms, idle {summary['idle_share']:.1%} "
                f"in {summary['gaps']} gaps, {summary['launches']} launches, {summary['host_syncs']} host syncs, "
                f"selection {select['ms']:.1f} ms ({select['share']:.2%} of the work)",
                flush=True,
            )
            blamed = ", ".join(f"{k} {v['ms']:.0f} ms" for k, v in list(summary["idle"].items())[:4])
            print(f"  idle while the host ran: {blamed or 'nothing'}", flush=True)
            owners = args.peak_owners is not None and (not args.peak_owners or name in args.peak_owners)
            if owners and device.type == "cuda":
                peak_rows(args, keys, env, _step(model, ids, labels, opt))
            model.zero_grad(set_to_none=True)
    return 0


PEAK_FIELDS = ["config", "shape", "seq_len", "keep_ratio", "completion", "rank", "owner", "gib", "share", "count",
               "gpu", "torch", "cuda", "transformers", "peft", "triton", "liger_kernel", "commit", "command"]  # fmt: skip


def peak_rows(args: argparse.Namespace, keys: dict, env: dict, step) -> None:
    """One step with the allocator's history on; its peak's owners go to `<out stem>_peak.csv`."""
    out = args.out.with_name(args.out.stem + "_peak.csv")
    owners = record_peak_owners(step)
    for rank, row in enumerate(owners, start=1):
        append_row(out, PEAK_FIELDS, {**keys, "completion": args.completion, "rank": rank, **row, **env})
    top = ", ".join(f"{r['owner']} {r['gib']:.2f} GiB" for r in owners[:3])
    print(f"{keys['config']} T={keys['seq_len']} peak owners: {top}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
