"""lemo: long-context fine-tuning with contextual token sparsity (LeMo / JENGA).

import lemo
cfg = lemo.SparsityConfig(keep_ratio=0.4)
model = lemo.apply(model, cfg)        # HF causal LM, plain or PEFT-wrapped; in place, reversible
loss = model(input_ids=ids, labels=ids).loss
lemo.stats(model)                     # what each sparse layer kept in the last forward
lemo.remove(model)                    # the exact original model again
"""

from lemo.config import SparsityConfig
from lemo.integrations.transformers import apply, remove, stats
from lemo.integrations.transformers.calibration import calibrate, choose_keep_ratios, load_predictors

__version__ = "0.1.0"
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
