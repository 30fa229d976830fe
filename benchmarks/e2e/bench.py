"""The end-to-end training-step benchmark, run from a source checkout: a thin script over `lemo.bench`.

    python benchmarks/e2e/bench.py --shape llama3-8b --lengths 8192 32768 --configs lora exact lemo-shared+gc
    lemo bench ...   (the same, from any install)

The code lives in the installed package (src/lemo/bench/); this script keeps the commands of the sweep scripts
(gpu_*.sh) and of the committed CSVs working, and re-exports the names other scripts read from it
(benchmarks/plan_validation.py loads it by path for `CONFIGS`). `--help` lists the flags.
"""

from __future__ import annotations

import sys

from lemo.bench.configs import CONFIGS, DEFAULT, PREDICTORS, SHARED, TILE_ALL, configure
from lemo.bench.model import SHAPES, build_model, check_model_dir
from lemo.bench.run import ENV_FIELDS, FIELDS, LONGEST_FIELDS, environment, main, parse_args
from lemo.bench.step import (
    MATMUL_RATE,
    longest_length,
    matmul_rate,
    model_tflop,
    probe,
    run_one,
    train_labels,
)

# The names these had when they lived in this file.
_PREDICTORS = PREDICTORS
_MATMUL_RATE = MATMUL_RATE
_probe = probe

__all__ = [
    "CONFIGS",
    "DEFAULT",
    "ENV_FIELDS",
    "FIELDS",
    "LONGEST_FIELDS",
    "SHAPES",
    "SHARED",
    "TILE_ALL",
    "build_model",
    "check_model_dir",
    "configure",
    "environment",
    "longest_length",
    "main",
    "matmul_rate",
    "model_tflop",
    "parse_args",
    "run_one",
    "train_labels",
]

if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as err:  # a bad --model directory: one line naming the fix, as `lemo bench` prints it
        print(f"bench.py: error: {err}", file=sys.stderr)
        sys.exit(2)
