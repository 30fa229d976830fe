"""Probe: in plain text, should the supervision scorer read the positions that already attend far back? (issue 19)

On plain text every position is labelled, so the scorer reads positions whose next token repeats a bigram seen far
back (`lemo.sparsity.supervision.repeat_positions`), 512 of them spread over the row. At 16K that rule keeps
filler nearly at the keep ratio (query_ngram_probe_cpu.csv). This probe narrows the candidates instead: of 2048
candidate positions (the bigram rule's, or every position), the scorer reads the 512 whose attention at the first
sparse layer puts the most mass on keys at least `--far` tokens back (summed over heads): positions that are
retrieving, not reading locally. The library adopted the bigram version (`lemo.sparsity.supervision.farthest`);
the probe sets its constants per rule. Measured like suite_bias.py: forward supervision, keep 0.6, one selection shared
by the sparse layers, the suite's plain-text rows; the share of evidence and of filler blocks kept.

    python benchmarks/quality/query_far_probe.py --rows 2 --seq-len 4096 16384 \\
        --out benchmarks/results/query_far_probe_cpu.csv
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch
from common import provenance  # beside this script
from suite_bias import measure  # the same rows, masks and tallies as the selection-bias table

import lemo.sparsity.selection as selection
import lemo.sparsity.supervision as supervision
from lemo.assets import austen_split, smollm2_dir
from lemo.config import SuiteConfig
from lemo.eval.suite_rows import training_rows
from lemo.integrations.transformers.loading import load_model

# name: (candidates: "bigram" or "all", positions read by the scorer, candidates first considered)
RULES = {
    "bigram, 512 spread (library until 2026-12-05)": ("bigram", 512, 512),
    "bigram, 512 of 2048 attending farthest (library)": ("bigram", 512, 2048),
    "any position, 512 of 2048 attending farthest": ("all", 512, 2048),
}
FIELDS = ["rule", "seq_len", "far", "kept_evidence", "kept_filler", "rows", "keep_ratio", "gpu", "torch",
          "transformers", "commit", "timestamp", "command"]  # fmt: skip


def install(candidates: str, read: int, considered: int, far: int):
    """Set the library's plain-text query rule for one rule; returns the undo."""
    saved = (selection.FAR_CANDIDATES, supervision.FAR_CANDIDATES, supervision.FAR_TOKENS,
             supervision.MAX_QUERIES, supervision.repeat_positions)  # fmt: skip
    # candidates spread to `considered`; `farthest` keeps `read` of them (a no-op when considered == read)
    selection.FAR_CANDIDATES = supervision.FAR_CANDIDATES = considered
    supervision.FAR_TOKENS, supervision.MAX_QUERIES = far, read
    if candidates == "all":
        supervision.repeat_positions = lambda ids, **_: torch.ones_like(ids, dtype=torch.bool)

    def undo() -> None:
        (selection.FAR_CANDIDATES, supervision.FAR_CANDIDATES, supervision.FAR_TOKENS, supervision.MAX_QUERIES,
         supervision.repeat_positions) = saved  # fmt: skip

    return undo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--seq-len", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--keep-ratio", type=float, default=0.6)
    ap.add_argument("--far", type=int, default=1024, help="a key this many rows back or more counts as far")
    ap.add_argument("--rules", nargs="+", choices=list(RULES), default=list(RULES))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/query_far_probe_cpu.csv"))
    args = ap.parse_args(argv)
    env = provenance(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model, tok = load_model(smollm2_dir(), dtype=dtype, device=device, rope_scaling="yarn", rope_factor=2.0)
    model.train()  # selection runs in training mode
    train, _ = austen_split()
    out = []
    for seq_len in args.seq_len:
        records = training_rows(train, tok, seq_len, args.rows, seed=99, cfg=SuiteConfig.from_preset("v3"))
        for name in args.rules:
            undo = install(*RULES[name], args.far)
            try:
                rows = [r for r in measure(model, records, tok, device, args.keep_ratio, ["forward: supervision"])
                        if r["form"] == "text"]  # fmt: skip
            finally:
                undo()
            ev = sum(r["kept_evidence"] for r in rows) / len(rows)
            fi = sum(r["kept_filler"] for r in rows) / len(rows)
            out.append(
                {"rule": name, "seq_len": seq_len, "far": args.far, "kept_evidence": ev, "kept_filler": fi}
            )
            print(f"{seq_len:>6} {name:46s} evidence {ev:.2f} filler {fi:.2f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in out:
            w.writerow({**r, "rows": args.rows, "keep_ratio": args.keep_ratio, **env})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
