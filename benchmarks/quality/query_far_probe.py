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

import torch
from common import provenance  # beside this script
from query_rules import add_probe_args, query_rule, run_rules, write_rows

# name: (candidates: "bigram" or "all", positions read by the scorer, candidates first considered)
RULES = {
    "bigram, 512 spread (library until 2026-12-05)": ("bigram", 512, 512),
    "bigram, 512 of 2048 attending farthest (library)": ("bigram", 512, 2048),
    "any position, 512 of 2048 attending farthest": ("all", 512, 2048),
}
FIELDS = ["rule", "seq_len", "far", "kept_evidence", "kept_filler", "rows", "keep_ratio", "gpu", "torch",
          "transformers", "commit", "timestamp", "command"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_probe_args(ap, list(RULES), "benchmarks/results/query_far_probe_cpu.csv")
    ap.add_argument("--far", type=int, default=1024, help="a key this many rows back or more counts as far")
    args = ap.parse_args(argv)
    env = provenance(argv)

    def rule_of(name: str):
        candidates, read, considered = RULES[name]
        every = (lambda ids, **_: torch.ones_like(ids, dtype=torch.bool)) if candidates == "all" else None
        return query_rule(read, considered, args.far, every)

    out = run_rules(args, "v3", rule_of, far=args.far)
    write_rows(
        args.out, FIELDS, [{**r, "rows": args.rows, "keep_ratio": args.keep_ratio, **env} for r in out]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
