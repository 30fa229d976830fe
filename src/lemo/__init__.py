"""lemo: long-context fine-tuning with contextual token sparsity (LeMo / JENGA).

import lemo
cfg = lemo.SparsityConfig()            # the measured default (docs/capability.md)
model = lemo.apply(model, cfg)        # HF causal LM, plain or PEFT-wrapped; in place, reversible
loss = model(input_ids=ids, labels=ids).loss
lemo.stats(model)                     # what each sparse layer kept in the last forward
lemo.remove(model)                    # the exact original model again
"""

from lemo._version import __version__
from lemo.config import SparsityConfig
from lemo.integrations.transformers import apply, remove, stats
from lemo.integrations.transformers.calibration import calibrate, choose_keep_ratios, load_predictors

__all__ = [
    "SparsityConfig",
    "__version__",
    "apply",
    "calibrate",
    "choose_keep_ratios",
    "load_predictors",
    "remove",
    "stats",
]
