"""The only place that knows Hugging Face transformers internals."""

from lemo.integrations.transformers.archs import SPECS, ArchSpec, spec_for
from lemo.integrations.transformers.patch import (
    apply,
    causal_lm,
    is_applied,
    mean_kept_fraction,
    remove,
    set_step,
    stats,
)
from lemo.integrations.transformers.shifted_sparse import (
    disable_shifted_sparse_attention,
    enable_shifted_sparse_attention,
)

__all__ = [
    "SPECS",
    "ArchSpec",
    "apply",
    "causal_lm",
    "disable_shifted_sparse_attention",
    "enable_shifted_sparse_attention",
    "is_applied",
    "mean_kept_fraction",
    "remove",
    "set_step",
    "spec_for",
    "stats",
]
