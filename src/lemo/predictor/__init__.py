"""Learned block-score predictors: module, training loop, recall, save/load.

No model library is imported here. Calibration's entry point is `lemo.calibrate`
(`lemo.integrations.transformers.calibration.calibrate`), which connects an HF model to `train_predictors`. The
budgeted keep-ratio search and the oracle serve any scorer, so they live in `lemo.sparsity.budget` and
`lemo.sparsity.scoring`; the configs live in `lemo.config`.
"""

from lemo.predictor.calibrate import evaluate_recall, map_loss, train_predictors
from lemo.predictor.identity import ModelIdentity, weight_fingerprint
from lemo.predictor.model import BlockPredictor, PredictorScorer, PredictorSet, load_predictor_set
from lemo.predictor.recall import block_recall, kept_mask, mass_recall, recall
from lemo.predictor.report import CalibrationReport
from lemo.predictor.samples import CalibrationModel

__all__ = [
    "BlockPredictor",
    "CalibrationModel",
    "CalibrationReport",
    "ModelIdentity",
    "PredictorScorer",
    "PredictorSet",
    "block_recall",
    "evaluate_recall",
    "kept_mask",
    "load_predictor_set",
    "map_loss",
    "mass_recall",
    "recall",
    "train_predictors",
    "weight_fingerprint",
]
