"""Forward-only diagnostics of token elimination on SmolLM2 (no training): where does the loss go?

On one window of Emma, compares the dense next-token loss with the loss under several sparsity settings, splits
the per-position loss by how many sparse layers eliminated the position, and measures how much adjacent layers'
kept sets overlap. One CSV row per (setting, measure). Runs on CPU in a few minutes.

    python benchmarks/quality/elimination_diagnostics.py --out benchmarks/results/elimination_diagnostics.csv
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata as md
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F

import lemo
from lemo.assets import austen_texts, smollm2_dir
from lemo.integrations.transformers.loading import load_model

SETTINGS = {
    "k0.4": {"keep_ratio": 0.4},
    "k0.7": {"keep_ratio": 0.7},
    "k0.4 layers 22-28": {"keep_ratio": 0.4, "sparse_layers": list(range(22, 29))},
    "k0.4 layers 14-23": {"keep_ratio": 0.4, "sparse_layers": list(range(14, 24))},
    "k0.4 local_blocks 8": {"keep_ratio": 0.4, "local_blocks": 8},
    "threshold 0.3": {"selection": "threshold", "threshold": 0.3},
    "k0.4 layer 14 only": {"keep_ratio": 0.4, "sparse_layers": [14]},
    "k0.4 layer 28 only": {"keep_ratio": 0.4, "sparse_layers": [28]},
    "k0.4 mlp tokens": {"keep_ratio": 0.4, "mlp": "tokens"},
    "k0.4 mlp tokens layer 28 only": {"keep_ratio": 0.4, "mlp": "tokens", "sparse_layers": [28]},
    "k0.4 shared": {"keep_ratio": 0.4, "shared_selection": True},
    "k0.7 shared": {"keep_ratio": 0.7, "shared_selection": True},
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--offset", type=int, default=20000, help="character offset into Emma")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/elimination_diagnostics.csv"))
    args = ap.parse_args(argv)
    env = {
        "device": "cpu",
        "torch": torch.__version__,
        "transformers": md.version("transformers"),
        "commit": os.environ.get("LEMO_COMMIT", "unknown"),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
    }
    model, tok = load_model(smollm2_dir())
    model.train()  # elimination is active in training mode; dropout is 0 in SmolLM2
    text = austen_texts().texts["emma"][args.offset : args.offset + 40 * args.tokens]
    ids = torch.tensor(tok(text)["input_ids"][: args.tokens])[None]  # [1, T]
    T = ids.shape[1]

    def position_loss() -> torch.Tensor:
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].float()  # [T-1, V]
        return F.cross_entropy(logits, ids[0, 1:], reduction="none")  # [T-1]

    rows = []

    def add(setting: str, measure: str, value: float, share: float | None = None) -> None:
        rows.append({"setting": setting, "measure": measure, "value": round(value, 4), "share": share, **env})
        print(
            f"{setting:32s} {measure:40s} {value:8.3f}" + (f"  ({share:.2f} of positions)" if share else "")
        )

    dense = position_loss()
    add("dense", "loss, all positions", float(dense.mean()))
    for name, kw in SETTINGS.items():
        lemo.apply(model, lemo.SparsityConfig(**kw))
        sparse = position_loss()
        stats = lemo.stats(model)
        lemo.remove(model)
        add(name, "loss, all positions", float(sparse.mean()))
        b = 64
        kept = torch.zeros(len(stats), T, dtype=torch.bool)  # [layers, T]
        for i, layer in enumerate(sorted(stats)):
            for blk in stats[layer]["blocks"][0]:
                kept[i, blk * b : (blk + 1) * b] = True
        kept = kept[:, :-1]  # position t predicts token t+1
        last = kept[-1]
        add(name, "loss, kept in last sparse layer", float(sparse[last].mean()), float(last.float().mean()))
        add(name, "dense loss, same positions", float(dense[last].mean()), float(last.float().mean()))
        if len(stats) > 1:
            eliminated = (~kept).sum(0)  # [T-1] layers that eliminated each position
            for lo, hi in ((0, 3), (3, 6), (6, 9), (9, 12), (12, 16)):
                sel = (eliminated >= lo) & (eliminated < hi)
                if sel.any():
                    add(
                        name,
                        f"loss, eliminated in {lo}-{hi - 1} layers",
                        float(sparse[sel].mean()),
                        float(sel.float().mean()),
                    )
            overlap = [
                float((kept[i] & kept[i + 1]).sum() / (kept[i] | kept[i + 1]).sum())
                for i in range(len(stats) - 1)
            ]
            add(name, "mean Jaccard overlap of adjacent layers", sum(overlap) / len(overlap))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
