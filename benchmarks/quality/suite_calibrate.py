"""The untrained model on the suite's eval samples, interleaved across families and lengths so that a run cut
short by `--time-s` still covers every cell: a check that no family is trivial or impossible (docs/suite.md).

    python benchmarks/quality/suite.py --configs base --rows 0 --eval-lengths 2048 1024 --questions 8 \
        --work runs/suite_cal --budget-s 1   # makes runs/suite_cal/eval.pkl only
    python benchmarks/quality/suite_calibrate.py --work runs/suite_cal --time-s 420 \
        --out benchmarks/results/suite_untrained_cpu.csv
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from common import load_eval_model, provenance  # beside this script
from suite import FIELDS
from suite_report import write_csv

from lemo.eval.capability import score_teacher
from lemo.eval.perplexity import _device_of


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="the suite's --work folder (its eval.pkl)")
    ap.add_argument("--time-s", type=float, default=420, help="stop scoring after this many seconds")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    env = provenance(argv)
    with (args.work / "eval.pkl").open("rb") as fh:
        samples = pickle.load(fh)
    cells = defaultdict(list)
    for s in samples:
        cells[(s.task, s.length)].append(s)
    # Round robin over (family, length): sample i of every cell before sample i + 1 of any.
    order = [c[i] for i in range(max(map(len, cells.values()))) for c in cells.values() if i < len(c)]
    model, _ = load_eval_model(None)
    model.eval()
    t0, hits = time.perf_counter(), defaultdict(list)
    with torch.no_grad():
        for s in order:
            if time.perf_counter() - t0 > args.time_s:
                break
            score = score_teacher(model, s, _device_of(model))
            hits[(s.task, s.length)].append((score.correct, score.token_accuracy))
    # The knobs the samples were made with: suite.py stamps them into the --work folder.
    suite = json.dumps(json.loads((args.work / "data.json").read_text())["suite"], sort_keys=True)
    extra = dict(config="base", form="-", seed=0, steps=0, sparsity="untrained", suite=suite, **env)
    rows = []
    for (f, n), h in sorted(hits.items()):
        for metric, i in (("exact_match", 0), ("token_accuracy", 1)):
            value = sum(x[i] for x in h) / len(h)
            rows.append({**extra, "metric": metric, "family": f, "eval_len": n, "value": value, "n": len(h)})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(args.out, rows, FIELDS)
    for r in rows:
        print(f"{r['family']:10s} {r['eval_len']:6d} {r['metric']:15s} {r['value']:.2f} (n={r['n']})")
    print(f"{sum(map(len, hits.values()))} samples in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
