"""Figures from the capability CSV: quality against GPU time (one curve per method), and length x depth maps.

    python benchmarks/quality/plot_capability.py benchmarks/results/capability_smollm2.csv
writes `<csv stem>_frontier.png` and `<csv stem>_heatmap.png` beside the CSV. GPU time is each run's steps
times its config's measured step-time ratio against `exact` (benchmarks/quality/equal_time.py).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import save_figure
from equal_time import config_name, gpu_time, step_ratios

LABELS = {
    "dense": "dense LoRA",
    "prio-random": "lemo default (labels first, random blocks)",
    "prio-mix": "labels first, half oracle half random",
    "prio-oracle": "labels first, oracle",
    "preset": "previous preset (oracle)",
    "longlora": "LongLoRA (S² attention)",
    "random": "random blocks, no label priority",
}


COLORS = dict(zip(LABELS, ("C0", "C3", "C4", "C1", "C2", "C5", "C6")))


def load(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def frontier(rows: list[dict[str, str]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ratios = step_ratios()
    metrics = [("retrieval_teacher", 16384, "multi-key retrieval @16K"), ("ppl", 16384, "held-out ppl @16K")]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    for col, form in enumerate(("sup", "text")):
        for row, (metric, length, title) in enumerate(metrics):
            ax = axes[row][col]
            curves: dict[str, list[tuple[float, float]]] = {}
            for r in rows:
                data, name, _ = config_name(r["config"])
                if r["metric"] != metric or int(r["eval_len"]) != length or r["depth"] != "all":
                    continue
                if r["sparsity"] == "untrained":  # the base model: the same in both panels
                    ax.axhline(float(r["value"]), color="grey", ls=":", label="untrained")
                    continue
                if data != form:
                    continue
                t = gpu_time(r["config"], int(r["steps"]), ratios)
                if t is not None:
                    curves.setdefault(name, []).append((t, float(r["value"])))
            for name, pts in sorted(curves.items()):
                pts.sort()
                style = "-o" if len(pts) > 1 else "*"
                kw = {
                    "color": COLORS.get(name),
                    "label": LABELS.get(name, name),
                    "ms": 6 if len(pts) > 1 else 14,
                }
                ax.plot(*zip(*pts), style, **kw)
            ax.set_xlabel("GPU time (steps of `exact`, Llama-3-8B shape at 16K)")
            ax.set_title(
                f"{title}, {'completion-only loss' if form == 'sup' else 'plain text, loss everywhere'}"
            )
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("SmolLM2-135M, YaRN x2 to 16K, LoRA r8, rows with 16 facts and 16 answered questions")
    return save_figure(fig, out)


def heatmaps(rows: list[dict[str, str]], out: Path, configs=("dense", "prio-random", "preset")) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(configs), figsize=(4.2 * len(configs), 3.4))
    for ax, c in zip(axes, configs):
        cells = {
            (int(r["eval_len"]), float(r["depth"])): float(r["value"])
            for r in rows
            if r["config"] == c and r["metric"] == "retrieval_teacher" and r["depth"] != "all"
        }
        lengths = sorted({k[0] for k in cells})
        depths = sorted({k[1] for k in cells})
        grid = [[cells[(n, d)] for d in depths] for n in lengths]
        ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower")
        for i in range(len(lengths)):
            for j in range(len(depths)):
                color = "k" if grid[i][j] > 0.5 else "w"  # readable on both ends of viridis
                ax.text(j, i, f"{grid[i][j]:.2f}", ha="center", va="center", color=color, fontsize=8)
        ax.set_xticks(range(len(depths)), [f"{d:g}" for d in depths])
        ax.set_yticks(range(len(lengths)), [f"{n // 1024}K" for n in lengths])
        ax.set_xlabel("depth of the queried fact")
        ax.set_title(LABELS.get(c, c), fontsize=9)
    axes[0].set_ylabel("context length")
    return save_figure(fig, out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", type=Path)
    args = ap.parse_args(argv)
    rows = load(args.csv)
    stem = args.csv.with_suffix("")
    print(frontier(rows, Path(f"{stem}_frontier.png")))
    print(heatmaps(rows, Path(f"{stem}_heatmap.png")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
