"""How many tokens each suite family's answers take, beside dense LoRA's scores on them (CPU, seconds).

    python benchmarks/quality/answer_tokens_probe.py --preset v4 --summary benchmarks/results/suite_v4_smollm2_summary.csv \
        --out benchmarks/results/suite_answer_tokens_cpu.csv

Exact match needs every answer token right, so a family with longer answers could score low for that alone. Per
family: the mean SmolLM2 token count of the held-out answers over `--contexts` drawn contexts (recall quotes the
filler and is drawn elsewhere: not counted), and, from a suite summary, dense LoRA's exact match and answer-token
accuracy at 16K for the same preset. `--knobs` (JSON) varies the preset, e.g. '{"kv_value_len": 2}'.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from lemo.bench.run import append_row, environment  # noqa: E402
from lemo.config.suite import SuiteConfig  # noqa: E402
from lemo.eval.suite import draw_facts  # noqa: E402

FIELDS = ["preset", "knobs", "family", "contexts", "answers", "mean_answer_tokens", "dense_exact_match",
          "dense_token_accuracy", "summary", "device", "transformers", "commit", "command"]  # fmt: skip


def answer_tokens(tokenizer, cfg: SuiteConfig, contexts: int) -> dict[str, list[int]]:
    """{family: token counts of its held-out answers} over `contexts` drawn contexts (seeds 0, 1, ...)."""
    out: dict[str, list[int]] = collections.defaultdict(list)
    for seed in range(contexts):
        for fact in draw_facts(random.Random(seed), cfg, "eval"):
            for q in fact.questions:
                out[q.family].append(len(tokenizer(q.answer, add_special_tokens=False)["input_ids"]))
    return out


def dense_scores(summary: Path | None) -> dict[tuple[str, str], str]:
    """{(family, metric): mean} of dense LoRA at 16K in prompt/completion form, from a suite summary CSV."""
    if summary is None:
        return {}
    rows = csv.DictReader(summary.open())
    return {
        (r["family"], r["metric"]): f"{float(r['mean']):.3f}"
        for r in rows
        if r["config"] == "dense" and r["form"] == "sup" and r["eval_len"] == "16384"
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="v4")
    ap.add_argument("--knobs", default="{}", help="SuiteConfig knobs over the preset, as JSON")
    ap.add_argument("--contexts", type=int, default=30)
    ap.add_argument(
        "--summary", type=Path, help="a suite summary CSV of the same preset: dense LoRA's scores"
    )
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    from lemo.assets.smollm2 import smollm2_dir

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir())
    knobs = json.loads(args.knobs)
    cfg = SuiteConfig.from_preset(args.preset, **knobs)
    scores = dense_scores(args.summary)
    env = environment()  # the tokenizer's counts need no accelerator: the CPU that ran them is named
    command = "python benchmarks/quality/answer_tokens_probe.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    for family, counts in sorted(answer_tokens(tokenizer, cfg, args.contexts).items()):
        row = {
            "preset": args.preset, "knobs": json.dumps(knobs), "family": family, "contexts": args.contexts,
            "answers": len(counts), "mean_answer_tokens": f"{statistics.mean(counts):.2f}",
            "dense_exact_match": scores.get((family, "exact_match"), ""),
            "dense_token_accuracy": scores.get((family, "token_accuracy"), ""),
            "summary": args.summary.name if args.summary else "", "device": f"cpu ({os.cpu_count()} cores)",
            "transformers": env["transformers"], "commit": env["commit"], "command": command,
        }  # fmt: skip
        print(family, row["mean_answer_tokens"], row["dense_exact_match"], row["dense_token_accuracy"])
        append_row(args.out, FIELDS, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
