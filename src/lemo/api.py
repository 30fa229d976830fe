"""What users and the CLI call. Each function takes one config dataclass, its fields as keywords, or both: the
keywords then replace those fields of the config (`finetune(cfg, steps=5)`), and the result is validated again."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

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

_C = TypeVar("_C")


def _with_overrides(cls: type[_C], config: _C | None, overrides: dict[str, Any]) -> _C:
    """`config` with `overrides` replacing its fields (a nested section is replaced whole: `sparsity={...}`), or a
    new `cls` from `overrides` alone. An unknown field is refused, never dropped."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown {cls.__name__} fields {unknown}; known fields: {sorted(known)}.")
    if config is None:
        return cls(**overrides)
    if not isinstance(config, cls):
        raise TypeError(f"config must be a {cls.__name__}, got {type(config).__name__}.")
    return dataclasses.replace(config, **overrides)  # type: ignore[type-var]


def finetune(config: FinetuneConfig | None = None, **overrides: Any) -> FinetuneResult:
    """LoRA fine-tuning with token elimination; see `FinetuneConfig` for every option."""
    return _finetune(_with_overrides(FinetuneConfig, config, overrides))


def evaluate(config: EvalConfig | None = None, **overrides: Any) -> list[PerplexityResult] | CapabilityResult:
    """Sliding-window perplexity of a model (plus adapter) at several lengths, or with `task` set, exact-match
    accuracy on a synthetic long-context task per length and needle depth; see `EvalConfig`."""
    return _evaluate(_with_overrides(EvalConfig, config, overrides))


def make_task_data(config: DataConfig | None = None, **overrides: Any) -> Path:
    """`lemo data`: training rows of a synthetic task (train name pool, training filler) as JSONL; see
    `DataConfig`. Returns the file written."""
    return _make_task_data(_with_overrides(DataConfig, config, overrides))


def calibrate_predictors(config: CalibrateConfig | None = None, **overrides: Any):
    """`lemo calibrate`: load a model, train its predictors with `lemo.calibrate`, save them (and optionally
    budgeted keep ratios); see `CalibrateConfig`."""
    return run_calibrate(_with_overrides(CalibrateConfig, config, overrides))


def plan(config: PlanConfig | None = None, **overrides: Any) -> Plan:
    """`lemo plan`: predicted GPU peak, pinned host memory and step time of one training step, with what to
    change when it does not fit; reads the model's config.json only (no GPU, no weights). Prints the table."""
    result = _predict(_with_overrides(PlanConfig, config, overrides))
    print(result.format())
    return result


def env() -> str:
    """Versions, devices and available backends, as printed by `lemo env`."""
    report = format_env_report(env_report())
    print(report)
    return report
