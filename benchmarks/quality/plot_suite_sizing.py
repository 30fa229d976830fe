"""Figure: how well the suite is sized, per family: dense LoRA's score at one eval length under each preset, with
the band the suite is sized for ([0.4, 0.9], docs/suite.md) shaded. One panel per form and metric.

    python benchmarks/quality/plot_suite_sizing.py v4=benchmarks/results/suite_v4_smollm2_summary.csv \\
        v6=benchmarks/results/suite_v6_smollm2_summary.csv --out benchmarks/results/suite_sizing_v4_v6.png

Reads the runner's summary CSVs (config, form, metric, family, eval_len, mean, se), or its raw CSVs (one row a
seed, `value`), summarized here: a sizing call's merged CSV names each variant's runs `dense:VARIANT`, so
`NAME=PATH.csv:CONFIG` picks one config of a file instead of --config, and a trailing `@LENGTH` reads that run at
its own eval length instead of --eval-len (runs trained at different lengths, each scored at its own).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from common import save_figure  # beside this script

from lemo.config.suite import FAMILIES
from lemo.eval.suite_summary import summarize

BAND = (0.4, 0.9)
METRICS = {"exact_match": "exact match", "token_accuracy": "answer-token accuracy"}


def read(path: Path, config: str, eval_len: int) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(form, metric, family) -> (mean, se) of `config` at `eval_len`, from a summary or a raw CSV."""
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    if rows and "mean" not in rows[0]:  # raw: one row a seed
        rows = summarize([r for r in rows if r["config"] == config], FAMILIES, reference=config)
    out = {}
    for r in rows:
        if r["config"] == config and str(r["eval_len"]) == str(eval_len) and r["metric"] in METRICS:
            out[(r["form"], r["metric"], r["family"])] = (float(r["mean"]), float(r["se"] or 0))
    return out


def parse_run(spec: str, config: str, eval_len: int) -> tuple[str, Path, str, int]:
    """NAME=PATH[.csv:CONFIG][@LENGTH] -> (name, path, config, eval length)."""
    name, sep, rest = spec.partition("=")
    base, at, length = rest.rpartition("@")
    rest = base if at else rest
    path, csv_sep, own = rest.partition(".csv:")
    path = path + ".csv" if csv_sep else rest
    if not sep or not Path(path).is_file() or (at and not length.isdigit()):
        raise SystemExit(
            f"{spec!r}: give NAME=PATH (or NAME=PATH.csv:CONFIG, either with @LENGTH) to a suite CSV that exists."
        )
    return name, Path(path), own or config, int(length) if at else eval_len


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("presets", nargs="+", help="NAME=PATH[.csv:CONFIG], in the order to draw them")
    ap.add_argument("--config", default="dense")
    ap.add_argument("--eval-len", type=int, default=16384)
    ap.add_argument("--steps", default="60 steps", help="the trainings' steps, for the title")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = []
    for spec in args.presets:
        name, path, config, length = parse_run(spec, args.config, args.eval_len)
        runs.append((name, read(path, config, length)))
    forms = sorted({k[0] for _, scores in runs for k in scores}, key=lambda f: f != "sup")
    fig, axes = plt.subplots(len(forms), len(METRICS), figsize=(12, 3.6 * len(forms)), squeeze=False)
    width = 0.8 / len(runs)
    for row, form in zip(axes, forms, strict=True):
        for ax, (metric, label) in zip(row, METRICS.items(), strict=True):
            ax.axhspan(*BAND, color="0.9", zorder=0, label=f"sized band {BAND[0]}-{BAND[1]}")
            for i, (name, scores) in enumerate(runs):
                cells = [scores.get((form, metric, f), (float("nan"), 0.0)) for f in FAMILIES]
                xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(FAMILIES))]
                ax.bar(xs, [m for m, _ in cells], width, yerr=[s for _, s in cells], capsize=3, label=name)
            ax.set_xticks(range(len(FAMILIES)), FAMILIES, rotation=20)
            ax.set_ylim(0, 1)
            ax.set_title(f"{'prompt/completion' if form == 'sup' else 'plain text'}: {label}")
            ax.grid(axis="y", alpha=0.3)
        at = "each run's length" if any("@" in s for s in args.presets) else f"{args.eval_len // 1024}K"
        row[0].set_ylabel(f"{args.config} at {at} (mean, SE over seeds)")
    # below the panels: inside one, the legend hides bars once there are more than a few runs
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=min(4, len(labels)))
    fig.suptitle(f"Suite sizing: {args.config} LoRA per family, SmolLM2-135M, {args.steps}")
    legend_rows = -(-len(labels) // 4)
    save_figure(fig, args.out, rect=(0, 0.03 + 0.035 * legend_rows, 1, 1))  # room below for the legend
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
