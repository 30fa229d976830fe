"""Figure: exact match per family for questions whose evidence is near the answer and for those far back (the
suite rows `exact_match_near` / `exact_match_far`: within 8192 tokens, SmolLM2's native length, or further), one
panel per run and config. Seeds are pooled: each bar is hits over questions, its error bar the binomial
standard error over those questions, and the number under it how many there were.

    python benchmarks/quality/plot_suite_distance.py \\
        "dense, v8 rows=benchmarks/results/suite_v9_sizing_smollm2.csv:dense:A_v8" \\
        "dense, v9=benchmarks/results/suite_v9_smollm2.csv:dense" \\
        "default, v9=benchmarks/results/suite_v9_smollm2.csv:default" \\
        --out benchmarks/results/suite_distance_v9.png
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from common import save_figure  # beside this script

from lemo.config.suite import FAMILIES

BANDS = {"exact_match_near": "evidence within 8K tokens", "exact_match_far": "evidence further back"}


def pooled(path: Path, config: str, form: str, eval_len: int) -> dict[tuple[str, str], tuple[float, int]]:
    """(metric, family) -> (exact match over every seed's questions, questions) of `config` in `form`."""
    hits: dict[tuple[str, str], list[float]] = {}
    with path.open() as fh:
        for r in csv.DictReader(fh):
            if (r["config"], r["form"], r["eval_len"]) != (config, form, str(eval_len)) or r[
                "metric"
            ] not in BANDS:
                continue
            n = int(r["n"])
            cell = hits.setdefault((r["metric"], r["family"]), [0.0, 0])
            cell[0] += float(r["value"]) * n
            cell[1] += n
    return {k: (h / n, n) for k, (h, n) in hits.items() if n}


def parse_run(spec: str) -> tuple[str, Path, str]:
    """ "LABEL=CSV:CONFIG" -> (label, csv, config); the config may itself hold a colon (dense:A_v8)."""
    label, sep, rest = spec.partition("=")
    path, colon, config = rest.partition(":")
    if not (sep and colon and config) or not Path(path).is_file():
        raise SystemExit(f"{spec!r}: give LABEL=PATH:CONFIG, PATH a suite CSV (raw rows) that exists.")
    return label, Path(path), config


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="LABEL=CSV:CONFIG, one panel each, in order")
    ap.add_argument("--form", default="sup", choices=("sup", "text"))
    ap.add_argument("--eval-len", type=int, default=16384)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    runs = [parse_run(spec) for spec in args.runs]
    cells = [(label, pooled(path, config, args.form, args.eval_len)) for label, path, config in runs]
    empty = [label for label, c in cells if not c]
    if empty:
        raise SystemExit(f"no exact_match_near/far rows for {empty}: such rows exist since suite v9's runs.")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(2, len(cells))
    rows = math.ceil(len(cells) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 3.6 * rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(cells) :]:
        ax.set_visible(False)
    for ax, (label, c) in zip(axes.flat, cells, strict=False):
        for i, (metric, name) in enumerate(BANDS.items()):
            xs = [j + (i - 0.5) * 0.4 for j in range(len(FAMILIES))]
            got = [c.get((metric, f), (math.nan, 0)) for f in FAMILIES]
            se = [math.sqrt(p * (1 - p) / n) if n else 0.0 for p, n in got]
            ax.bar(xs, [p for p, _ in got], 0.4, yerr=se, capsize=2, label=name)
            for x, (_, n) in zip(xs, got, strict=True):
                if n:
                    ax.text(x, 0.01, str(n), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(FAMILIES)), FAMILIES, rotation=25, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_title(label, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for row in axes:
        row[0].set_ylabel(f"exact match at {args.eval_len // 1024}K (seeds pooled)")
    axes[0][0].legend(fontsize=7, loc="upper right")
    form = "prompt/completion" if args.form == "sup" else "plain text"
    fig.suptitle(f"Near and far evidence, SmolLM2-135M (YaRN x2), {form} rows (questions at each bar's foot)")
    fig.tight_layout()
    save_figure(fig, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
