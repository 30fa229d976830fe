"""Sliding-window perplexity, under its public name `lemo.eval.perplexity`.

The code lives in `lemo.utils.perplexity`, below both `train` (held-out perplexity during a fine-tune) and `eval`
(`lemo eval`), so that training does not import the evaluation package, which itself reads data through `train`.
"""

from lemo.utils.perplexity import (
    IGNORE_INDEX,
    PerplexityResult,
    _device_of,
    perplexity,
    perplexity_at_lengths,
)

__all__ = ["IGNORE_INDEX", "PerplexityResult", "_device_of", "perplexity", "perplexity_at_lengths"]
