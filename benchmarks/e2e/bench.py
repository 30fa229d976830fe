"""The end-to-end training-step benchmark, run from a source checkout: a thin script over `lemo.bench`.

    python benchmarks/e2e/bench.py --shape llama3-8b --lengths 8192 32768 --configs lora exact lemo-shared+gc
    lemo bench ...   (the same, from any install)

The code lives in the installed package (src/lemo/bench/); this script keeps the commands of the sweep scripts
(gpu_*.sh) and of the committed CSVs working. `--help` lists the flags.
"""

from __future__ import annotations

import sys

from lemo.bench.run import main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as err:  # a bad --model directory: one line naming the fix, as `lemo bench` prints it
        print(f"bench.py: error: {err}", file=sys.stderr)
        sys.exit(2)
