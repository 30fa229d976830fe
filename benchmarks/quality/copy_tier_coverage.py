"""How selective the plain-text copy tier is on the capability suite's rows (token ids only: no model, no GPU).

The plain-text tier (`SparsityConfig(copy_plain_text=True)`) keeps first the blocks holding an n-gram that recurs
at least 256 tokens later, at most `max_repeats` times in its row (`repeat_sources`), and with `copy_repeats` the
blocks holding those later occurrences too. A tier that covers more blocks than the keep budget chooses nothing:
the budget is then drawn among its blocks as among all. Per n-gram length and `max_repeats`, this reports the
share of a row's 64-token blocks each tier marks and the share of the evidence blocks (the spans the suite's
answers need, `record["evidence"]`) among them, against the evidence's share of all blocks.

    python benchmarks/quality/copy_tier_coverage.py --rows 8 --seq-len 8192 --suite '{"preset": "v7"}' \
        --out benchmarks/results/copy_tier_coverage_v7_cpu.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import torch
from common import provenance  # benchmarks/quality/common.py, beside this script

from lemo.assets import austen_split, smollm2_dir
from lemo.config import SuiteConfig
from lemo.eval.evidence import record_evidence
from lemo.eval.suite_rows import text_form, training_rows
from lemo.ops import blocks_with_any
from lemo.sparsity.supervision import repeat_sources

BLOCK = 64
FIELDS = ["ngram", "max_repeats", "tier", "blocks_marked", "evidence_recall", "evidence_precision",
          "evidence_share", "rows", "seq_len", "suite", "gpu", "commit", "timestamp", "command"]  # fmt: skip


def coverage(rows: list[tuple[torch.Tensor, torch.Tensor]], n: int, max_repeats: int, copies: bool) -> dict:
    """Pooled over `rows` ([T] ids, [T] bool evidence): the share of blocks the tier marks, the share of the
    evidence blocks it marks (recall) and the evidence's share of what it marks (precision)."""
    marked = hit = evidence = blocks = 0
    for ids, ev in rows:
        tier = blocks_with_any(repeat_sources(ids[None], n, max_repeats=max_repeats, copies=copies)[0], BLOCK)
        evb = blocks_with_any(ev, BLOCK)  # [nb]
        marked += int(tier.sum())
        hit += int((tier & evb).sum())
        evidence += int(evb.sum())
        blocks += tier.numel()
    return {
        "blocks_marked": marked / blocks,
        "evidence_recall": hit / max(evidence, 1),
        "evidence_precision": hit / max(marked, 1),
        "evidence_share": evidence / blocks,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--suite", default='{"preset": "v7"}', help="SuiteConfig knobs as JSON over a preset")
    ap.add_argument("--ngrams", type=int, nargs="+", default=[3, 4, 6, 8])
    ap.add_argument("--max-repeats", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/copy_tier_coverage_v7_cpu.csv"))
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir())
    knobs = json.loads(args.suite)
    suite = SuiteConfig.from_preset(knobs.pop("preset", "v2"), **knobs)
    records = training_rows(austen_split()[0], tok, args.seq_len, args.rows, seed=99, cfg=suite)
    rows = []
    for rec in records:  # plain text: the form the tier is for
        ids, ev = record_evidence(text_form(rec), tok)
        rows.append((torch.as_tensor(ids), torch.as_tensor(ev, dtype=torch.bool)))  # [T] each
    env = provenance(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for n in args.ngrams:
            for mr in args.max_repeats:
                for tier, copies in (("sources", False), ("sources + repeats", True)):
                    r = {"ngram": n, "max_repeats": mr, "tier": tier, **coverage(rows, n, mr, copies)}
                    w.writerow({**r, "rows": args.rows, "seq_len": args.seq_len, "suite": args.suite, **env})
                    print(f"n={n} max_repeats={mr} {tier:18s} marks {r['blocks_marked']:.2f} of the blocks, "
                          f"evidence recall {r['evidence_recall']:.2f} precision {r['evidence_precision']:.2f} "
                          f"(evidence share {r['evidence_share']:.2f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
