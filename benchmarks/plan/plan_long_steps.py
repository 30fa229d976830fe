"""`lemo plan`'s prediction for the longest rows (issue 20 item 4): GPU peak, pinned host memory and step time
of exact LoRA (lemo's dense path, no Liger) and of lemo's default, both with offload and full tiling (tiles of 8192, tiled
attention), on the Llama-3-8B shape with gradient checkpointing and 2% of the row labelled, under the 80 GB cap
(74.5 GiB) and a 124 GiB host. `fits_call` says whether one warm step, plus about 60 s for the model build and a
two-layer warm-up, fits in one 600 s device call: 512K is measured only when it does. A prediction, not a
measurement (plan_validation.csv scores the model against measured rows).

    python benchmarks/plan/plan_long_steps.py --out benchmarks/results/plan_long_steps.csv
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from lemo.bench.run import append_row  # noqa: E402
from lemo.config import SparsityConfig  # noqa: E402
from lemo.plan import PlanConfig, predict  # noqa: E402

CALL_S, SETUP_S = 600, 60  # a device call's limit; the model build and the warm-up before the timed step
FIELDS = ["config", "seq_len", "gpu_peak_gib", "gpu_need_gib", "fits_gpu", "host_gib", "step_s", "fits_call",
          "shape", "gpu", "torch", "commit", "command"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[131072, 262144, 393216, 524288])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    args.out.unlink(missing_ok=True)  # a prediction: rewritten whole, not appended to
    tiled = dict(offload="cpu", tile_tokens=8192, tile_attention=True)
    # exact is lemo's dense path with the same offload and tiling (sparse layers none), as `lemo bench` runs it
    for name, layers in (("exact+offload+tiled-attn", "none"), ("lemo+offload+tiled-attn", "auto")):
        for T in args.lengths:
            plan = predict(PlanConfig(shape="llama3-8b", seq_len=T, sparsity=SparsityConfig(sparse_layers=layers, **tiled),
                                      gradient_checkpointing=True, labelled_fraction=0.02, gpu_gib=74.5,
                                      host_gib=124.0))  # fmt: skip
            fits_call = plan.step_s + SETUP_S <= CALL_S
            append_row(args.out, FIELDS, {"config": name, "seq_len": T, "gpu_peak_gib": round(plan.gpu_peak_gib, 2),
                                          "gpu_need_gib": round(plan.gpu_need_gib, 2), "fits_gpu": plan.fits_gpu,
                                          "host_gib": round(plan.host_need_gib, 2), "step_s": round(plan.step_s, 1),
                                          "fits_call": fits_call, "shape": "llama3-8b",
                                          "gpu": "none (lemo plan: H200 rates)", "torch": torch.__version__,
                                          "commit": commit.stdout.strip(), "command": command})  # fmt: skip
            print(
                f"{name:26} T={T:7} peak {plan.gpu_peak_gib:6.2f} GiB  step {plan.step_s:7.1f} s  "
                f"fits GPU {plan.fits_gpu}  fits a call {fits_call}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
