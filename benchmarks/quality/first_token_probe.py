"""What a briefly trained SmolLM2 puts first after a suite question's "Answer:", per family (CPU, minutes).

    python benchmarks/quality/first_token_probe.py --preset v3 --out benchmarks/results/suite_first_token_cpu.csv
    python benchmarks/quality/first_token_probe.py --preset v4 --out benchmarks/results/suite_first_token_cpu.csv

LoRA r8 on q/k/v/o, fp32, lr 5e-4, one prompt/completion row of the suite per step (short rows: a CPU's size),
then teacher-forced held-out questions of each family at the same length. A row per family: how often the first
answer token is right, the answer-token accuracy, and what was predicted first. It tells a family whose answers
start unlike the others' (a format the shared lead cannot show) from one whose skill is not learned.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from cpu_lora import train_dense_lora  # noqa: E402 (beside this script)

from lemo.bench.run import append_row, environment  # noqa: E402
from lemo.config.suite import SuiteConfig  # noqa: E402
from lemo.eval.capability import score_teacher  # noqa: E402
from lemo.eval.suite_rows import eval_samples, training_rows  # noqa: E402

FIELDS = ["preset", "family", "seq_len", "steps", "questions", "first_right", "token_accuracy", "predicted_first",
          "last_loss", "device", "torch", "transformers", "peft", "commit", "command"]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="v3")
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--questions", type=int, default=8, help="held-out questions per family")
    ap.add_argument("--families", nargs="+", default=["count", "recall", "multikey", "kv"])
    ap.add_argument("--out", type=Path, required=True, help="CSV to append to")
    args = ap.parse_args(argv)
    from transformers import AutoTokenizer

    from lemo.assets import austen_split, smollm2_dir

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(smollm2_dir())
    train, held = austen_split()
    cfg = SuiteConfig.from_preset(args.preset)
    rows = training_rows(train, tok, args.seq_len, args.steps, seed=0, cfg=cfg)
    model, last_loss = train_dense_lora(smollm2_dir(), tok, rows)
    env = {k: environment()[k] for k in ("torch", "transformers", "peft", "commit")}
    env["device"] = (
        f"cpu ({os.cpu_count()} cores)"  # the model trains on the CPU here, whatever else the machine has
    )
    for family in args.families:
        samples = eval_samples(held, tok, [args.seq_len], args.questions, cfg=cfg, families=[family])
        firsts, right, acc = collections.Counter(), 0, []
        for s in samples:
            n = len(s.answer_ids)
            with torch.no_grad():  # the prediction at each answer position, as the suite scores it
                pred = score_teacher(model, s, torch.device("cpu")).predicted
            firsts[tok.decode([pred[0]])] += 1
            right += pred[0] == s.answer_ids[0]
            acc.append(sum(a == b for a, b in zip(pred, s.answer_ids)) / n)
        row = {
            "preset": args.preset, "family": family, "seq_len": args.seq_len, "steps": args.steps,
            "questions": len(samples), "first_right": right, "token_accuracy": f"{sum(acc) / len(acc):.3f}",
            "predicted_first": json.dumps(dict(firsts)), "last_loss": f"{last_loss:.3f}", **env,
            "command": "python benchmarks/quality/first_token_probe.py " + " ".join(sys.argv[1:] if argv is None else argv),
        }  # fmt: skip
        print(
            family, row["first_right"], "/", row["questions"], row["token_accuracy"], row["predicted_first"]
        )
        append_row(args.out, FIELDS, row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
