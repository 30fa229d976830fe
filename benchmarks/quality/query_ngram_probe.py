"""Probe: which plain-text positions should the supervision scorer read? (issue 19, deliverable 3)

On plain text every position is labelled, so `lemo.sparsity.supervision.query_mask` reads the attention of the
positions whose next token repeats an n-gram seen far back (an induction proxy for LongPPL's key tokens): today
a bigram seen at least 256 tokens earlier and at most 4 times in the row. This probe swaps that rule for longer
n-grams, larger gaps, fewer repeats and more query positions per segment (512 today), and measures the forward supervision selector (keep 0.6, one selection
shared by the sparse layers, as `SparsityConfig(scorer="supervision")`) on the suite's plain-text rows: the share
of evidence and of filler blocks kept, averaged over the sparse layers (suite_bias.py's measure).

    python benchmarks/quality/query_ngram_probe.py --rows 2 --seq-len 4096 16384 \\
        --out benchmarks/results/query_ngram_probe_cpu.csv
"""

from __future__ import annotations

import argparse
import csv
import functools
from pathlib import Path

import torch
from common import provenance  # beside this script
from suite_bias import measure  # the same rows, masks and tallies as the selection-bias table

import lemo.sparsity.supervision as supervision
from lemo.assets import austen_split, smollm2_dir
from lemo.config import SuiteConfig
from lemo.eval.suite_rows import training_rows
from lemo.integrations.transformers.loading import load_model

# name: (n, min_gap, max_repeats, query positions scored per segment); the first is the library's rule
RULES = {
    "bigram, gap 256, <= 4 (library)": (2, 256, 4, 512),
    "trigram, gap 256, <= 4": (3, 256, 4, 512),
    "4-gram, gap 256, <= 4": (4, 256, 4, 512),
    "bigram, gap 1024, <= 4": (2, 1024, 4, 512),
    "bigram, gap 256, <= 2": (2, 256, 2, 512),
    "bigram, gap 256, <= 4, 2048 queries": (2, 256, 4, 2048),
    "trigram, gap 256, <= 4, 2048 queries": (3, 256, 4, 2048),
}
FIELDS = ["rule", "seq_len", "kept_evidence", "kept_filler", "rows", "keep_ratio", "gpu", "torch",
          "transformers", "commit", "timestamp", "command"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--seq-len", type=int, nargs="+", default=[4096, 16384])
    ap.add_argument("--keep-ratio", type=float, default=0.6)
    ap.add_argument("--rules", nargs="+", choices=list(RULES), default=list(RULES))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/query_ngram_probe_cpu.csv"))
    args = ap.parse_args(argv)
    env = provenance(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model, tok = load_model(smollm2_dir(), dtype=dtype, device=device, rope_scaling="yarn", rope_factor=2.0)
    model.train()  # selection runs in training mode
    train, _ = austen_split()
    library_rule, library_queries = supervision.repeat_positions, supervision.MAX_QUERIES
    out = []
    for seq_len in args.seq_len:
        records = training_rows(train, tok, seq_len, args.rows, seed=99, cfg=SuiteConfig.from_preset("v2"))
        for name in args.rules:
            n, gap, repeats, queries = RULES[name]
            supervision.repeat_positions = functools.partial(
                library_rule, n=n, min_gap=gap, max_repeats=repeats
            )
            supervision.MAX_QUERIES = queries
            try:
                rows = [r for r in measure(model, records, tok, device, args.keep_ratio, ["forward: supervision"])
                        if r["form"] == "text"]  # fmt: skip
            finally:
                supervision.repeat_positions, supervision.MAX_QUERIES = library_rule, library_queries
            ev = sum(r["kept_evidence"] for r in rows) / len(rows)
            fi = sum(r["kept_filler"] for r in rows) / len(rows)
            out.append({"rule": name, "seq_len": seq_len, "kept_evidence": ev, "kept_filler": fi})
            print(f"{seq_len:>6} {name:34s} evidence {ev:.2f} filler {fi:.2f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in out:
            w.writerow({**r, "rows": args.rows, "keep_ratio": args.keep_ratio, **env})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
