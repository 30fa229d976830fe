"""One longest-T row per configuration from the rows of several device calls (`lemo bench --mode longest
--probe-lengths ...` run once per call, each call at most 10 minutes).

    python benchmarks/e2e/combine_longest.py benchmarks/results/e2e_llama3_8b_offload_longest_calls.csv \
        --out benchmarks/results/e2e_llama3_8b_offload_longest.csv

The calls file keeps every row as measured; the combined file is what the README table and figure read.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from lemo.bench.rows import combine_longest, read_csv  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("calls", type=Path, help="longest-T CSV with one row per call")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    kind, rows = read_csv(args.calls)
    if kind != "longest":
        raise SystemExit(f"{args.calls} is a step CSV; give the longest-T CSV of lemo bench --mode longest")
    with args.calls.open(newline="") as fh:
        fields = list(csv.DictReader(fh).fieldnames or [])
    command = "python benchmarks/e2e/combine_longest.py " + " ".join(sys.argv[1:] if argv is None else argv)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in combine_longest(rows):
            writer.writerow({**row, "command": command})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
