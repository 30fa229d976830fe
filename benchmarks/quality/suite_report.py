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


VERDICT_COLORS = {"reference": "C0", "higher": "C2", "tie": "C7", "lower": "C3"}
METRICS = (("exact_match", "teacher-forced exact match"), ("token_accuracy", "answer-token accuracy"))


def plot(summary: list[dict], out: Path) -> Path | None:
    """Suite mean +- SE at the longest eval length, one bar per config coloured by its verdict against the
    reference: one column per form, one row per metric (exact match, then answer-token accuracy, which is what
    discriminates where exact match sits at the floor)."""
    suite = [r for r in summary if r["family"] == SUITE and r["metric"] in dict(METRICS)]
    if not suite:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    longest = max(int(r["eval_len"]) for r in suite)
    forms = sorted({r["form"] for r in suite})
    metrics = [m for m in METRICS if any(r["metric"] == m[0] for r in suite)]
    fig, axes = plt.subplots(
        len(metrics), len(forms), figsize=(6 * len(forms), 3.6 * len(metrics)), squeeze=False
    )
    for row, (metric, label) in zip(axes, metrics, strict=True):
        for ax, form in zip(row, forms, strict=True):
            rows = [
                r for r in suite if (r["form"], r["metric"], int(r["eval_len"])) == (form, metric, longest)
            ]
            err = [0 if math.isnan(r["se"]) else r["se"] for r in rows]
            colors = [VERDICT_COLORS.get(r["verdict"], "C7") for r in rows]
            ax.bar([r["config"] for r in rows], [r["mean"] for r in rows], yerr=err, capsize=4, color=colors)
            ax.set_title(f"{form}: suite mean @ {longest // 1024}K, SE over seeds", fontsize=10)
            top = max((r["mean"] + e for r, e in zip(rows, err, strict=True)), default=0.0)
            ax.set_ylim(0, min(1.0, max(0.05, 1.25 * top)))
            ax.tick_params(axis="x", rotation=30)
            ax.set_ylabel(label)
    fig.suptitle(
        "against the reference (blue): green higher, grey a tie (under 2 SE), red lower", fontsize=10
    )
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
