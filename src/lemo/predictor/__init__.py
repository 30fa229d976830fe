"""Learned block-score predictors: module, calibration (training), recall, save/load.

No model library is imported here; `lemo.integrations.transformers.calibration` connects HF models. The budgeted
keep-ratio search and the oracle live in `lemo.sparsity.budget` and `lemo.sparsity.scoring` (they serve any
scorer, not only predictors); their names are re-exported here for code written before they moved.
"""

from lemo.predictor.calibrate import calibrate, evaluate_recall, map_loss
from lemo.predictor.identity import ModelIdentity, weight_fingerprint
from lemo.predictor.model import (
    BlockPredictor,
    PredictorScorer,
    PredictorSet,
    load_predictors,
)
from lemo.predictor.recall import block_recall, kept_mask, mass_recall
from lemo.predictor.report import CalibrationReport
from lemo.predictor.samples import CalibrationModel
from lemo.sparsity.budget import (
    DEFAULT_GRID,
    BudgetResult,
    DamageTable,
    allocate,
    choose_keep_ratios,
    fraction_for_memory,
    measure_damage,
)
from lemo.sparsity.scoring import oracle_map

__all__ = [
    "DEFAULT_GRID",
    "BlockPredictor",
    "BudgetResult",
    "CalibrationModel",
    "CalibrationReport",
    "DamageTable",
    "ModelIdentity",
    "PredictorScorer",
    "PredictorSet",
    "allocate",
    "block_recall",
    "calibrate",
    "choose_keep_ratios",
    "evaluate_recall",
    "fraction_for_memory",
    "kept_mask",
    "load_predictors",
    "map_loss",
    "mass_recall",
    "measure_damage",
    "oracle_map",
    "weight_fingerprint",
]
