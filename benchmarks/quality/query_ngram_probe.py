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
import functools

from common import provenance  # beside this script
from query_rules import add_probe_args, query_rule, run_rules, write_rows

import lemo.sparsity.supervision as supervision

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
    add_probe_args(ap, list(RULES), "benchmarks/results/query_ngram_probe_cpu.csv")
    args = ap.parse_args(argv)
    env = provenance(argv)

    def rule_of(name: str):
        n, gap, repeats, queries = RULES[name]
        rule = functools.partial(supervision.repeat_positions, n=n, min_gap=gap, max_repeats=repeats)
        return query_rule(queries, queries, repeats=rule)  # spread evenly, as when this probe ran

    out = run_rules(args, "v2", rule_of)
    write_rows(
        args.out, FIELDS, [{**r, "rows": args.rows, "keep_ratio": args.keep_ratio, **env} for r in out]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
