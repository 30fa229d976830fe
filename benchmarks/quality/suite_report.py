"""The capability suite's outputs from its part files: the raw CSV, the summary CSV and the plot.

    python benchmarks/quality/suite_report.py benchmarks/results/suite_smollm2.parts \
        --out benchmarks/results/suite_smollm2.csv
writes `<out>`, `<out stem>_summary.csv` (mean, standard error over seeds, verdict against the reference) and
`<out stem>.png` (suite mean +- standard error at the longest length, per config and form).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from lemo.config.suite import FAMILIES
from lemo.eval.suite_summary import SUITE, SUMMARY_FIELDS, summarize


def read_parts(parts: Path) -> list[dict[str, str]]:
    rows = []
    for path in sorted(parts.glob("*.csv")):
        with path.open(newline="") as fh:
            rows.extend(csv.DictReader(fh))
    return rows


def write_csv(path: Path, rows: list[dict], fields: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    tmp.rename(path)


def plot(summary: list[dict], out: Path) -> Path | None:
    """Suite mean +- SE of exact match at the longest eval length: one bar per config, one panel per form."""
    suite = [r for r in summary if r["family"] == SUITE and r["metric"] == "exact_match"]
    if not suite:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    longest = max(int(r["eval_len"]) for r in suite)
    forms = sorted({r["form"] for r in suite})
    fig, axes = plt.subplots(1, len(forms), figsize=(6 * len(forms), 4), squeeze=False)
    for ax, form in zip(axes[0], forms, strict=True):
        rows = [r for r in suite if r["form"] == form and int(r["eval_len"]) == longest]
        names = [r["config"] for r in rows]
        err = [0 if math.isnan(r["se"]) else r["se"] for r in rows]
        colors = [
            "C0" if r["verdict"] == "reference" else "C2" if r["verdict"] == "tie" else "C3" for r in rows
        ]
        ax.bar(names, [r["mean"] for r in rows], yerr=err, capsize=4, color=colors)
        ax.set_title(f"{form}: suite mean @ {longest // 1024}K (SE over seeds; green = tie with reference)")
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", rotation=30)
        ax.set_ylabel("teacher-forced exact match")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def write_report(
    parts: Path, out: Path, fields: list[str], reference: str = "dense", families: Sequence[str] = FAMILIES
) -> None:
    """Rebuild the raw CSV (columns `fields`), the summary and the plot from every part file (none: no-op)."""
    rows = read_parts(parts)
    if not rows:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out, rows, fields)
    summary = summarize(rows, families, reference)
    write_csv(out.with_name(out.stem + "_summary.csv"), summary, SUMMARY_FIELDS)
    plot(summary, out.with_suffix(".png"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--reference", default="dense")
    args = ap.parse_args(argv)
    from suite import FIELDS  # beside this script

    write_report(args.parts, args.out, FIELDS, args.reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
