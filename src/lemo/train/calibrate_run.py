"""`lemo calibrate`: load the model and texts a `CalibrateConfig` names, run `lemo.calibrate` (calibration's one
entry point) on them, save the predictors, and optionally choose budgeted keep ratios."""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import asdict
from pathlib import Path

from lemo.assets import austen_split, smollm2_dir
from lemo.config import CalibrateConfig
from lemo.integrations.transformers.calibration import calibrate, choose_keep_ratios
from lemo.integrations.transformers.loading import load_model
from lemo.train.data import load_documents
from lemo.utils.device import resolve_device

log = logging.getLogger(__name__)


def run_calibrate(cfg: CalibrateConfig):
    device, dtype = resolve_device(cfg.device, cfg.dtype)
    model_dir = cfg.model or smollm2_dir()
    model, tokenizer = load_model(model_dir, dtype=dtype, device=device)
    if cfg.data:
        texts = load_documents(cfg.data)
        holdout = load_documents(cfg.holdout) if cfg.holdout else None
    else:
        texts, held = austen_split()
        holdout = load_documents(cfg.holdout) if cfg.holdout else [held]
    out = Path(cfg.output)
    preds = calibrate(
        model,
        texts,
        tokenizer,
        sparsity=cfg.sparsity,
        config=cfg.calibration,
        holdout=holdout,
        output_dir=out,
    )
    preds.save(out)
    if importlib.util.find_spec("matplotlib") is None:
        log.warning(
            "matplotlib is not installed: the PNG plots were skipped (pip install matplotlib to get them)."
        )
    report = getattr(preds, "report", None)
    if report is not None:
        print(f"predictors saved to {out}; mean held-out recall {_mean_recall(report):.3f}")
    if cfg.budget is not None:
        result = choose_keep_ratios(
            model, holdout or texts, tokenizer, target=cfg.budget, sparsity=cfg.sparsity, predictors=preds
        )
        print(f"budget {cfg.budget}: keep ratios {result.sparsity_dict().get('keep_ratio')}")
        (out / "budget.json").write_text(json.dumps(asdict(result), indent=1, default=str), encoding="utf-8")
        if cfg.write_config:
            result.write_yaml(cfg.write_config)
            print(f"sparsity section written to {cfg.write_config}")
    return preds


def _mean_recall(report) -> float:
    recall = getattr(report, "recall", None) or {}
    values = list(recall.values()) if isinstance(recall, dict) else list(recall)
    return sum(values) / len(values) if values else float("nan")
