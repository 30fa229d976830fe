"""Probe: which part of a recall site the default selector drops (issue 19, suite v7's recall gap).

A recall site is one evidence span, the quoted sentence and the words after it that answer (lemo.eval.suite).
The default keeps about half of recall's evidence blocks (suite_bias_family_v7_cpu_rows8.csv), and on the GPU
suite recall's exact match is 0.05 against dense LoRA's 0.26 and the evidence oracle's 0.26. This asks where the
loss is: per site, is the block holding the answer's last token kept (what a copy reads), the block holding the
quote's first token, and every block of the site? Untrained SmolLM2 on the CPU, suite rows as `suite_bias.py`
builds them, forward elimination with one shared selection (so one layer's numbers stand for all).
`--max-queries` changes how many labelled positions the supervision scorer reads per row (512 in lemo).

    python benchmarks/quality/recall_parts_probe.py --rows 8 --seq-len 8192 --keep-ratio 0.5 \\
        --suite "$(cat benchmarks/results/suite_v7_sizing_chosen.json)" \\
        --out benchmarks/results/recall_parts_v7_cpu.csv
"""

from __future__ import annotations

import argparse
import csv
import json
from dataclasses import asdict
from pathlib import Path

import suite_bias  # beside this script
import torch
from common import provenance

import lemo
import lemo.sparsity.selection as selection
import lemo.sparsity.supervision as supervision
from lemo.assets import austen_split, smollm2_dir
from lemo.config import SuiteConfig
from lemo.eval.evidence import record_evidence
from lemo.eval.suite_rows import training_rows
from lemo.integrations.transformers.loading import load_model

BLOCK = 64
SELECTORS = ("forward: supervision + 0.25 random", "forward: random + labels")
FIELDS = ["selector", "form", "part", "kept", "sites", "max_queries", "rows", "seq_len", "keep_ratio", "suite", "gpu", "torch",
          "transformers", "commit", "timestamp", "command"]  # fmt: skip


def site_blocks(record: dict, form: str, tokenizer) -> list[tuple[int, int]]:
    """Per recall site of the row in `form`: (block of its first token, block of its last token)."""
    out = []
    for span in record["evidence_by_family"].get("recall", []):
        _, mask = record_evidence(suite_bias._form({**record, "evidence": [span]}, form), tokenizer)
        tokens = mask.nonzero().flatten()  # [n] the site's tokens
        if tokens.numel():
            out.append((int(tokens[0]) // BLOCK, int(tokens[-1]) // BLOCK))
    return out


def measure(model, records: list[dict], tokenizer, keep: float, names=SELECTORS) -> list[dict]:
    """Per selector and form, the share of recall sites whose first block, last block, or every block is kept."""
    out = []
    for name in names:
        torch.manual_seed(0)
        lemo.apply(model, lemo.SparsityConfig(keep_ratio=keep, **suite_bias.SELECTORS[name]))
        for form in ("sup", "text"):
            tally = {"first block (quote)": 0, "last block (answer)": 0, "every block": 0}
            sites = 0
            for rec in records:
                row = suite_bias.block_masks(rec, form, tokenizer, BLOCK)
                x = torch.tensor(row.ids)[None]  # [1, T]
                labels = x.clone()
                if form == "sup":
                    labels[:, : row.n_prompt] = -100
                suite_bias._select(model, x, labels, False)
                stats = lemo.stats(model)
                kept = set(stats[min(stats)]["blocks"][0])  # one shared selection: the first sparse layer's
                for first, last in site_blocks(rec, form, tokenizer):
                    sites += 1
                    tally["first block (quote)"] += first in kept
                    tally["last block (answer)"] += last in kept
                    tally["every block"] += all(b in kept for b in range(first, last + 1))
            out += [{"selector": name, "form": form, "part": p, "kept": n / max(sites, 1), "sites": sites}
                    for p, n in tally.items()]  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--keep-ratio", type=float, default=0.5)
    ap.add_argument("--suite", default='{"preset": "v7"}')
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--selectors", nargs="+", choices=SELECTORS, default=list(SELECTORS))
    ap.add_argument("--max-queries", type=int, default=supervision.MAX_QUERIES,
                    help="labelled positions the supervision scorer reads per row (lemo's MAX_QUERIES)")  # fmt: skip
    args = ap.parse_args(argv)
    # the scorer spreads the query rows to this many where they are chosen and again where they are read
    selection.MAX_QUERIES = supervision.MAX_QUERIES = args.max_queries
    env = provenance(argv)
    model, tok = load_model(smollm2_dir(), dtype=torch.float32, device=torch.device("cpu"), rope_scaling="yarn",
                            rope_factor=2.0)  # fmt: skip
    model.train()
    for p in model.parameters():
        p.requires_grad_(False)
    knobs = json.loads(args.suite)
    suite = SuiteConfig.from_preset(knobs.pop("preset", "v2"), **knobs)
    records = training_rows(austen_split()[0], tok, args.seq_len, args.rows, seed=99, cfg=suite)
    rows = measure(model, records, tok, args.keep_ratio, args.selectors)
    with args.out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, "max_queries": args.max_queries, "rows": args.rows, "seq_len": args.seq_len, "keep_ratio": args.keep_ratio,
                        "suite": json.dumps(asdict(suite), sort_keys=True), **env})  # fmt: skip
    for r in rows:
        print(f"{r['selector']:36s} {r['form']:4s} {r['part']:22s} {r['kept']:.2f} of {r['sites']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
