"""Where a briefly trained SmolLM2's suite answers go wrong, per family and answer-token kind (CPU: about 40 minutes at 2K on 2 cores).

    python benchmarks/quality/answer_errors_probe.py --suite '{"preset": "v10", "families": ["multikey", "multivalue", "kv"]}' \\
        --seq-len 2048 --out benchmarks/results/suite_answer_errors_cpu.csv

Dense LoRA as the GPU suite trains it (cpu_lora.py), one row a step, then teacher-forced questions of each family at
the same length, in the held-out wording and in the training wordings (`held_out_phrasing` false: names and filler
stay held out). Each answer token is one of four kinds: the leading space, a value's first character (a digit or
letter after a token without one: finding the value), a later character of a value (copying it once found), or
punctuation between values. Exact match and accuracy per kind tell a family that cannot find its value from one
that cannot copy it, which says which knob to move when dense LoRA does not learn a family (docs/suite.md). Each
question is also answered greedily: where the generated answer's first value came from (the right fact, another
value of the context, or none of its values) tells a lookup that confuses facts from one that finds none, and the
values generated most often show an answer the model gives whatever the question (a count it always says).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from common import suite_from_json  # noqa: E402 (beside this script)
from cpu_lora import train_dense_lora  # noqa: E402

from lemo.bench.run import append_row, environment  # noqa: E402
from lemo.eval.answer_kinds import (  # noqa: E402
    KINDS,
    SOURCES,
    first_errors,
    first_value,
    kind_accuracy,
    token_kinds,
    value_source,
)
from lemo.eval.capability import score_samples  # noqa: E402
from lemo.eval.suite_rows import eval_samples, training_rows  # noqa: E402

FIELDS = ["suite", "family", "wording", "seq_len", "steps", "questions", "exact_match", "token_accuracy",
          *(f"acc_{k}" for k in KINDS), *(f"n_{k}" for k in KINDS), "first_error", "greedy_exact_match",
          *(f"source_{s}" for s in SOURCES), "greedy_values", "last_loss", "device", "torch",
          "transformers", "peft", "commit", "command"]  # fmt: skip


def score(kinds: list[list[str]], right: list[list[bool]]) -> dict:
    """Exact match, token accuracy, accuracy and count per kind ("" and 0 for a kind no answer has), and where
    each wrong answer first went wrong."""
    per = kind_accuracy(kinds, right)
    out = {
        "questions": len(right),
        "exact_match": round(sum(all(rs) for rs in right) / len(right), 4),
        "token_accuracy": round(sum(sum(rs) / len(rs) for rs in right) / len(right), 4),
        "first_error": json.dumps(first_errors(kinds, right)),
    }
    for k in KINDS:
        acc, n = per.get(k, ("", 0))
        out[f"acc_{k}"], out[f"n_{k}"] = round(acc, 4) if n else "", n
    return out


def sources(samples: list, greedy: list) -> dict:
    """Greedy exact match, how many answers' first value came from each source, and the 5 first values generated
    most often (JSON)."""
    got = [value_source(s.prompt, s.answer, o.predicted) for s, o in zip(samples, greedy, strict=True)]
    values = Counter(first_value(o.predicted) for o in greedy).most_common(5)
    return {
        "greedy_exact_match": round(sum(o.correct for o in greedy) / len(greedy), 4),
        **{f"source_{k}": got.count(k) for k in SOURCES},
        "greedy_values": json.dumps(dict(values)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--suite", default='{"preset": "v10"}', help="SuiteConfig knobs as JSON (a preset and overrides)"
    )
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--questions", type=int, default=16, help="questions per family and wording")
    ap.add_argument("--out", type=Path, required=True, help="CSV to append to")
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    from lemo.assets import austen_split, smollm2_dir

    cfg = suite_from_json(args.suite)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(smollm2_dir())
    train, held = austen_split()
    rows = training_rows(train, tok, args.seq_len, args.steps, seed=0, cfg=cfg)
    model, last_loss = train_dense_lora(smollm2_dir(), tok, rows)
    env = {k: environment()[k] for k in ("torch", "transformers", "peft", "commit")}
    env["device"] = f"cpu ({os.cpu_count()} cores)"
    command = "python benchmarks/quality/answer_errors_probe.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    for wording, held_out in (("held_out", True), ("trained", False)):
        eval_cfg = dataclasses.replace(cfg, held_out_phrasing=held_out)
        for family in cfg.families:
            samples = eval_samples(held, tok, [args.seq_len], args.questions, cfg=eval_cfg, families=[family])
            # the suite's own scoring, teacher-forced (per-token hits) and greedy (the generated values)
            res = score_samples(model, tok, samples, modes=("teacher", "greedy"), progress=False)
            kinds = [token_kinds([tok.decode([t]) for t in s.answer_ids]) for s in samples]
            right = [o.hits for o in res.samples if o.mode == "teacher"]
            greedy = [o for o in res.samples if o.mode == "greedy"]
            row = {"suite": json.dumps(dataclasses.asdict(cfg), sort_keys=True), "family": family,
                   "wording": wording, "seq_len": args.seq_len, "steps": args.steps, **score(kinds, right),
                   **sources(samples, greedy),
                   "last_loss": f"{last_loss:.3f}", **env, "command": command}  # fmt: skip
            print(
                wording,
                family,
                {k: row[k] for k in ("exact_match", "token_accuracy", "first_error", "greedy_exact_match")},
                flush=True,
            )
            print("  " + "  ".join(f"{k}={row[f'acc_{k}']} (n={row[f'n_{k}']})" for k in KINDS), flush=True)
            print(
                "  sources: " + "  ".join(f"{k}={row[f'source_{k}']}" for k in SOURCES), row["greedy_values"]
            )
            append_row(args.out, FIELDS, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
