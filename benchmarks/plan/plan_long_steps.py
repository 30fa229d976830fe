"""`lemo plan`'s prediction for the longest rows (issue 20 item 4): GPU peak, pinned host memory and step time
of the exact stacks and of lemo's default (SparsityConfig() at the commit), on HF's kernels and on Liger's, each
with offload and full tiling (tiles of 8192, tiled attention), on the Llama-3-8B shape with gradient
checkpointing and 2% of the row labelled, under the 80 GB cap (74.5 GiB) and a 124 GiB host. Configs are
`lemo bench`'s (lemo.bench.configs, through plan_validation.plan_config). `fits_call` says whether one warm
step, plus about 60 s for the model build and a two-layer warm-up, fits in one 600 s device call; a longer run
goes through benchmarks/device/gpu_detached.sh, which outlives the call. A prediction, not a measurement
(plan_validation.csv scores the model against measured rows).

    python benchmarks/plan/plan_long_steps.py --out benchmarks/results/plan_long_steps.csv
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from plan_validation import plan_config  # noqa: E402

from lemo.bench.run import append_row  # noqa: E402
from lemo.config import SparsityConfig  # noqa: E402
from lemo.plan import predict  # noqa: E402

CALL_S, SETUP_S = 600, 60  # a device call's limit; the model build and the warm-up before the timed step
CAP_GIB, HOST_GIB = 74.5, 124.0
CONFIGS = [
    "exact+offload+tiled-attn",
    "default+offload+tiled-attn",
    "liger-exact+offload+tiled-attn",
    "liger-default+offload+tiled-attn",
]
FIELDS = ["config", "seq_len", "gpu_peak_gib", "gpu_need_gib", "fits_gpu", "host_gib", "step_s", "fits_call",
          "keep_ratio", "shape", "gpu", "torch", "commit", "command"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[131072, 262144, 393216, 524288])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    args.out.unlink(missing_ok=True)  # a prediction: rewritten whole, not appended to
    keep = SparsityConfig().keep_ratio
    for name in CONFIGS:
        for T in args.lengths:
            cfg = plan_config(name, "llama3-8b", T, keep, "auto", 0.02)
            plan = predict(dataclasses.replace(cfg, gpu_gib=CAP_GIB, host_gib=HOST_GIB))
            fits_call = plan.step_s + SETUP_S <= CALL_S
            append_row(args.out, FIELDS, {"config": name, "seq_len": T, "gpu_peak_gib": round(plan.gpu_peak_gib, 2),
                                          "gpu_need_gib": round(plan.gpu_need_gib, 2), "fits_gpu": plan.fits_gpu,
                                          "host_gib": round(plan.host_need_gib, 2), "step_s": round(plan.step_s, 1),
                                          "fits_call": fits_call, "keep_ratio": keep, "shape": "llama3-8b",
                                          "gpu": "none (lemo plan: H200 rates)", "torch": torch.__version__,
                                          "commit": commit.stdout.strip(), "command": command})  # fmt: skip
            print(
                f"{name:34} T={T:7} peak {plan.gpu_peak_gib:6.2f} GiB  host {plan.host_need_gib:6.2f} GiB  "
                f"step {plan.step_s:7.1f} s  fits GPU {plan.fits_gpu}  fits a call {fits_call}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
