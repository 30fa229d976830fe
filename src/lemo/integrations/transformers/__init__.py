"""The only place that knows Hugging Face transformers internals."""

from lemo.integrations.transformers.archs import SPECS, ArchSpec, spec_for
from lemo.integrations.transformers.patch import (
    apply,
    causal_lm,
    is_applied,
    mean_kept_fraction,
    remove,
    stats,
)

__all__ = [
    "SPECS",
    "ArchSpec",
    "apply",
    "causal_lm",
    "is_applied",
    "mean_kept_fraction",
    "remove",
    "spec_for",
    "stats",
]
