"""Figures from end-to-end benchmark CSVs, run from a source checkout: a thin script over `lemo.bench.plot`.

    python benchmarks/e2e/plot.py benchmarks/results/e2e_llama3_8b.csv --out-dir benchmarks/results \\
        --prefix e2e_llama3_8b
    lemo bench plot ...   (the same, from any install)

The code lives in the installed package (src/lemo/bench/plot.py, rows.py, axes.py); this script keeps the
documented commands working. `--help` explains the CSV kinds and the figures.
"""

from __future__ import annotations

import sys

from lemo.bench.plot import main

if __name__ == "__main__":
    sys.exit(main())
