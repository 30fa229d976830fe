"""What a fine-tune measures besides the loss: held-out perplexity before and after training, and the share of
tokens its layers kept at the last step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lemo.config import FinetuneConfig
from lemo.integrations.transformers import mean_kept_fraction, stats
from lemo.train.strategy import Strategy
from lemo.utils.perplexity import PerplexityResult, perplexity


def evaluate_heldout(
    model, held_ids: torch.Tensor | None, cfg: FinetuneConfig, label: str, say: Callable[[str], Any]
) -> list[PerplexityResult]:
    if held_ids is None or not cfg.eval_lengths:
        return []
    results = []
    for n in cfg.eval_lengths:
        r = perplexity(model, held_ids, context=n, stride=n, max_windows=cfg.eval_windows)
        say(f"held-out perplexity {label} @ {n} tokens: {r.ppl:.3f} ({r.tokens} tokens scored)")
        results.append(r)
    return results


def kept_fractions(model, cfg: FinetuneConfig, strategy: Strategy) -> tuple[float, float | None]:
    """The last step's kept fraction over all layers (dense ones count as 1), and over the sparse layers alone
    (None without any); under torchrun, the ranks' means."""
    if not cfg.sparse:
        return 1.0, None
    per_layer = [s["kept_fraction"] for s in stats(model).values()]
    kept, sparse = mean_kept_fraction(model), (sum(per_layer) / len(per_layer) if per_layer else None)
    kept = strategy.mean(kept)
    if sparse is not None:  # every rank has the same sparse layers, so all of them take this branch
        sparse = strategy.mean(sparse)
    return kept, sparse
