"""Plots from the committed op-benchmark CSVs (benchmarks/results/ops_*.csv); never typed-in numbers.

python benchmarks/ops/plot_ops.py [--results benchmarks/results]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def main() -> None:
    import matplotlib  # optional dependency (the `plot` extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=Path(__file__).resolve().parents[1] / "results")
    args = ap.parse_args()
    rows = read(args.results / "ops_sparse_attention.csv")
    lengths = sorted({int(r["T"]) for r in rows})
    fig, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 4), squeeze=False)
    for ax, T in zip(axes[0], lengths):
        rs = sorted((r for r in rows if int(r["T"]) == T), key=lambda r: float(r["keep_ratio"]))
        x = [float(r["keep_ratio"]) for r in rs]
        dense = float(rs[0]["dense_sdpa_fwd_bwd_ms"])
        ax.plot(x, [float(r["kernel_fwd_bwd_ms"]) for r in rs], "o-", label="lemo varlen kernel")
        ax.plot(x, [float(r["kernel_plus_add_ms"]) for r in rs], "s-", label="kernel + fused residual add")
        ax.plot(
            x,
            [float(r["naive_gather_sdpa_scatter_ms"]) for r in rs],
            "^-",
            label="gather + SDPA + scatter/add",
        )
        ax.axhline(dense, color="gray", ls="--", label="dense SDPA (flash), all T")
        ax.plot(x, [1.3 * xi * xi * dense for xi in x], ":", color="red", label="target 1.3 r² × dense")
        ax.set_title(f"T = {T // 1024}K, forward + backward")
        ax.set_xlabel("keep ratio r")
        ax.set_ylabel("ms")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"sparse attention on {rows[0]['gpu']} (H=32, H_kv=8, D=128, bf16)")
    fig.tight_layout()
    out = args.results / "ops_sparse_attention.png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
