"""lemo: long-context fine-tuning with contextual token sparsity (LeMo / JENGA).

import lemo
cfg = lemo.SparsityConfig()            # the measured default (docs/capability.md)
model = lemo.apply(model, cfg)        # HF causal LM, plain or PEFT-wrapped; in place, reversible
loss = model(input_ids=ids, labels=ids).loss
lemo.stats(model)                     # what each sparse layer kept in the last forward
lemo.set_step(model, step, steps)     # before each optimizer step, with SparsityConfig(dense_tail=...)
lemo.remove(model)                    # the exact original model again
"""

from typing import TYPE_CHECKING

from lemo._version import __version__
from lemo.config import SparsityConfig

# The model-facing functions load on first use: `import lemo` (and the `lemo` command's entry point, which must be
# able to catch a Ctrl-C while torch and transformers import) stays free of torch until one is touched.
_LAZY = {
    "apply": "lemo.integrations.transformers",
    "remove": "lemo.integrations.transformers",
    "stats": "lemo.integrations.transformers",
    "set_step": "lemo.integrations.transformers",
    "calibrate": "lemo.integrations.transformers.calibration",
    "choose_keep_ratios": "lemo.integrations.transformers.calibration",
    "load_predictors": "lemo.integrations.transformers.calibration",
}

if TYPE_CHECKING:
    from lemo.integrations.transformers import apply, remove, set_step, stats
    from lemo.integrations.transformers.calibration import calibrate, choose_keep_ratios, load_predictors


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'lemo' has no attribute {name!r}")


def __dir__() -> list[str]:
    # dir() and help() list a module's globals, and a lazy name is not one until it is first touched: add them,
    # by name only (help() then fetches each, importing torch; dir() imports nothing).
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "SparsityConfig",
    "__version__",
    "apply",
    "calibrate",
    "choose_keep_ratios",
    "load_predictors",
    "remove",
    "set_step",
    "stats",
]
