"""`lemo plan`'s prediction for the sparse-layer sets and the trimmed last layer (docs/design.md section 1): where
the GPU peak falls and how high, and the step time, for "none" (exact LoRA with lemo's segmented loss), the default
"auto" (the last layer dense, as in the artifact) with and without `trim_last_layer` (the last layer runs only
the rows the loss scores), and "upper" (the last layer sparse too), on the Llama-3-8B shape with gradient
checkpointing, with 2% of the row labelled (prompt/completion) and every position labelled (plain text). A
prediction, not a measurement: the bench configs `lemo-random+gc` (auto, untrimmed), `lemo-trim+gc` and
`lemo-upper+gc` (with their `liger-` twins) measure it.

    python benchmarks/plan/plan_layer_sets.py --out benchmarks/results/plan_layer_sets.csv
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

BASIS = "lemo plan: a prediction, step times at the H200-fitted rates"
FIELDS = [
    "sparse_layers",
    "trim_last_layer",
    "labelled_fraction",
    "seq_len",
    "gpu_peak_gib",
    "peak_at",
    "step_s",
    "shape",
    "basis",
    "torch",
    "commit",
    "command",
]
SETS = [("none", False), ("none", True), ("auto", False), ("auto", True), ("upper", True)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[16384, 32768])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    args.out.unlink(missing_ok=True)  # a prediction: rewritten whole, not appended to
    for labelled in (0.02, 1.0):
        for layers, trim in SETS:
            for T in args.lengths:
                cfg = PlanConfig(
                    shape="llama3-8b",
                    seq_len=T,
                    sparsity=SparsityConfig(sparse_layers=layers, trim_last_layer=trim),
                    gradient_checkpointing=True,
                    labelled_fraction=labelled,
                )
                plan = predict(cfg)
                append_row(args.out, FIELDS, {"sparse_layers": layers, "trim_last_layer": trim,
                                              "labelled_fraction": labelled, "seq_len": T, "shape": "llama3-8b", "basis": BASIS, "torch": torch.__version__,
                                              "gpu_peak_gib": round(plan.gpu_peak_gib, 2), "peak_at": plan.phase,
                                              "step_s": round(plan.step_s, 3), "commit": commit.stdout.strip(),
                                              "command": command})  # fmt: skip
                print(f"{layers:6} trim={trim!s:5} labelled {labelled:4} T={T:6} peak {plan.gpu_peak_gib:6.2f} GiB "
                      f"at {plan.phase}, {plan.step_s:.3f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
