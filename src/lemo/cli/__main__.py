"""`lemo`: a thin table from subcommands to api functions. No logic lives here."""

from __future__ import annotations

import argparse
import logging
import sys

from lemo import api
from lemo.cli import bench
from lemo.config import CalibrateConfig, DataConfig, EvalConfig, FinetuneConfig, PlanConfig
from lemo.train.interrupt import TrainingInterrupted
from lemo.utils.argparser import build_parser, config_from_args

COMMANDS = {
    "finetune": (FinetuneConfig, api.finetune, "LoRA fine-tuning on long texts with token elimination"),
    "eval": (
        EvalConfig,
        api.evaluate,
        "sliding-window perplexity of a model (+ adapter) at several lengths, or with --task, exact-match "
        "accuracy on a synthetic long-context task per length and needle depth",
    ),
    "data": (
        DataConfig,
        api.make_task_data,
        "write training rows of a synthetic long-context task as JSONL ({prompt, completion})",
    ),
    "calibrate": (
        CalibrateConfig,
        api.calibrate_predictors,
        "train block-score predictors (+ budgeted keep ratios)",
    ),
    "plan": (
        PlanConfig,
        api.plan,
        "predicted GPU peak, pinned host memory and step time of a training step, and what to change when it "
        "does not fit (reads config.json only: no GPU, no weights)",
    ),
}
BENCH_HELP = (
    "end-to-end memory/step-time benchmark of LoRA fine-tuning on a named shape or your model (--model DIR), "
    "with lemo's configs beside the exact baselines; `lemo bench plot` draws figures from its CSVs; "
    "`lemo bench --help` lists the flags"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lemo", description="Long-context fine-tuning with contextual token sparsity."
    )
    sub = parser.add_subparsers(dest="_command", required=True)
    for name, (cls, _fn, help_text) in COMMANDS.items():
        build_parser(sub.add_parser(name, help=help_text, description=help_text), cls)
    sub.add_parser("env", help="versions, devices and available backends (paste this into bug reports)")
    sub.add_parser("bench", help=BENCH_HELP, add_help=False)  # listed in `lemo --help`; parsed by the script
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["bench"]:
        # Handed over unparsed: every flag after `bench`, --help included, belongs to the benchmark script's own
        # parser (argparse.REMAINDER would not take a leading option such as `--help`).
        return bench.run(args[1:])
    ns = parser.parse_args(args)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if ns._command == "env":
        api.env()
        return 0
    cls, fn, _ = COMMANDS[ns._command]
    try:
        cfg = config_from_args(cls, ns)
        result = fn(cfg)
    except (ValueError, OSError, RuntimeError, ArithmeticError) as err:  # ArithmeticError: a NaN loss
        print(f"lemo {ns._command}: error: {err}", file=sys.stderr)
        return 2
    except TrainingInterrupted as err:  # Ctrl-C in training: a checkpoint was saved
        print(f"lemo {ns._command}: {err}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:  # Ctrl-C outside training (loading, evaluating): nothing to save
        print(f"lemo {ns._command}: interrupted", file=sys.stderr)
        return 130
    # A result may carry its own status: `lemo plan` exits 1 when the run does not fit, so scripts can branch.
    return getattr(result, "exit_code", 0)


if __name__ == "__main__":
    sys.exit(main())
