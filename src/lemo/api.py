"""What users and the CLI call. Each function takes one config dataclass (or its fields as keywords)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lemo.config import CalibrateConfig, DataConfig, EvalConfig, FinetuneConfig, PlanConfig
from lemo.eval.capability_result import CapabilityResult
from lemo.eval.perplexity import PerplexityResult
from lemo.eval.run import evaluate as _evaluate
from lemo.eval.run import make_task_data as _make_task_data
from lemo.plan import Plan
from lemo.plan import predict as _predict
from lemo.train.calibrate_run import run_calibrate
from lemo.train.loop import FinetuneResult
from lemo.train.loop import finetune as _finetune
from lemo.utils.env import env_report, format_env_report


def finetune(config: FinetuneConfig | None = None, **overrides: Any) -> FinetuneResult:
    """LoRA fine-tuning with token elimination; see `FinetuneConfig` for every option."""
    cfg = config or FinetuneConfig(**overrides)
    return _finetune(cfg)


def evaluate(config: EvalConfig | None = None, **overrides: Any) -> list[PerplexityResult] | CapabilityResult:
    """Sliding-window perplexity of a model (plus adapter) at several lengths, or with `task` set, exact-match
    accuracy on a synthetic long-context task per length and needle depth; see `EvalConfig`."""
    return _evaluate(config or EvalConfig(**overrides))


def make_task_data(config: DataConfig | None = None, **overrides: Any) -> Path:
    """`lemo data`: training rows of a synthetic task (train name pool, training filler) as JSONL; see
    `DataConfig`. Returns the file written."""
    return _make_task_data(config or DataConfig(**overrides))


def calibrate_predictors(config: CalibrateConfig | None = None, **overrides: Any):
    """`lemo calibrate`: load a model, train its predictors, save them (and optionally budgeted keep ratios)."""
    return run_calibrate(config or CalibrateConfig(**overrides))


def plan(config: PlanConfig | None = None, **overrides: Any) -> Plan:
    """`lemo plan`: predicted GPU peak, pinned host memory and step time of one training step, with what to
    change when it does not fit; reads the model's config.json only (no GPU, no weights). Prints the table."""
    result = _predict(config or PlanConfig(**overrides))
    print(result.format())
    return result


def env() -> str:
    """Versions, devices and available backends, as printed by `lemo env`."""
    report = format_env_report(env_report())
    print(report)
    return report
