"""Draw docs/how_it_works.png, the README's one diagram of token elimination.

    python benchmarks/figures/how_it_works_diagram.py            # writes docs/how_it_works.png

A schematic, not a measurement: one training row of 16 blocks through a model of 8 layers. The lower half is
dense. In the upper half every layer works on the same kept blocks (the first block, the last block, every block
holding a labelled position, then the blocks those positions attend to, with a random share, up to the keep
ratio; drawn here as one fixed pick); the other blocks pass through unchanged, by the residual connection, so
none of their activations are stored. The last layer is trimmed: it computes only the positions the loss reads,
and every other block gives it only its keys and values.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "how_it_works.png"

BLOCKS = 16  # blocks of 64 tokens in the drawn row
LAYERS = 8  # the lower half dense, the upper half sparse (sparse_layers="auto" spares the last layer too)
LABELLED = {12, 13, 14}  # blocks holding the completion (the positions with a label)
KEEP_RATIO = 0.6


def kept_blocks(seed: int = 4) -> set[int]:
    """A selection drawn once: first and last block, labelled blocks, then others up to the budget."""
    kept = {0, BLOCKS - 1, *LABELLED}
    budget = round(KEEP_RATIO * BLOCKS)
    rest = [b for b in range(BLOCKS) if b not in kept]
    random.Random(seed).shuffle(rest)
    return kept | set(rest[: budget - len(kept)])


def draw(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    kept = kept_blocks()
    sparse = set(range(LAYERS // 2 - 1, LAYERS - 1))  # like "auto": L//2-1 .. L-2
    colors = {
        "dense": "#4c72b0",
        "kept": "#dd8452",
        "skipped": "#eeeeee",
        "label": "#55a868",
        "kv": "#b7c7e3",
    }
    last = LAYERS - 1  # trimmed: full rows where the loss reads, keys and values elsewhere

    fig, ax = plt.subplots(figsize=(9.0, 4.9), dpi=120)
    for layer in range(LAYERS):
        y = layer
        for b in range(BLOCKS):
            if layer == last:
                face = colors["dense"] if b in kept else colors["kv"]
            elif layer not in sparse:
                face = colors["dense"]
            else:
                face = colors["kept"] if b in kept else colors["skipped"]
            ax.add_patch(Rectangle((b, y), 0.92, 0.8, facecolor=face, edgecolor="white"))
        kind = "  (trimmed)" if layer == last else "  (sparse)" if layer in sparse else "  (dense)"
        name = f"layer {layer + 1}" + kind
        ax.text(-0.3, y + 0.4, name, ha="right", va="center", fontsize=9)
    # the input row: which blocks carry labels
    for b in range(BLOCKS):
        face = colors["label"] if b in LABELLED else "#bbbbbb"
        ax.add_patch(Rectangle((b, -1.2), 0.92, 0.8, facecolor=face, edgecolor="white"))
    ax.text(-0.3, -0.8, "input row", ha="right", va="center", fontsize=9)
    # the loss row: positions whose prediction trains the adapter (loss_tokens="kept")
    for b in range(BLOCKS):
        face = colors["kept"] if b in kept else colors["skipped"]
        ax.add_patch(Rectangle((b, LAYERS + 0.2), 0.92, 0.8, facecolor=face, edgecolor="white", hatch="//"))
    ax.text(-0.3, LAYERS + 0.6, "loss on", ha="right", va="center", fontsize=9)
    ax.annotate(
        "eliminated blocks skip the layer:\nthe residual carries them, nothing is stored",
        xy=(4.45, min(sparse) + 1.4),
        xytext=(BLOCKS + 0.4, min(sparse) + 1.0),
        fontsize=8.5,
        va="center",
        arrowprops={"arrowstyle": "->", "color": "#555555"},
    )
    ax.annotate(
        "blocks with labels\nare always kept",
        xy=(13.4, LAYERS - 1.6),
        xytext=(BLOCKS + 0.4, LAYERS - 1.0),
        fontsize=8.5,
        va="center",
        arrowprops={"arrowstyle": "->", "color": "#555555"},
    )
    ax.annotate(
        "the loss is computed\non kept positions only",
        xy=(BLOCKS - 0.05, LAYERS + 0.6),
        xytext=(BLOCKS + 0.4, LAYERS + 0.6),
        fontsize=8.5,
        va="center",
        arrowprops={"arrowstyle": "->", "color": "#555555"},
    )
    ax.legend(
        handles=[
            Patch(color=colors["dense"], label="computed (dense layer)"),
            Patch(color=colors["kept"], label="computed (kept block)"),
            Patch(color=colors["skipped"], label="skipped (eliminated block)"),
            Patch(color=colors["label"], label="block with labels (completion)"),
            Patch(color=colors["kv"], label="keys and values only (last layer)"),
        ],
        loc="upper center",
        bbox_to_anchor=(0.42, -0.02),
        ncol=2,
        fontsize=8.5,
        frameon=False,
    )
    ax.set_xlim(-3.6, BLOCKS + 6.5)
    ax.set_ylim(-1.5, LAYERS + 1.3)
    ax.set_title(
        f"One training row of {BLOCKS} blocks of 64 tokens; the sparse layers keep {KEEP_RATIO:.0%} of them",
        fontsize=10,
    )
    ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Software": None})  # no version stamp: the file changes only with the drawing
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    draw(ap.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
