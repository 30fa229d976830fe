"""How well predicted block scores choose the oracle's blocks (docs/design.md section 4).

Recall at keep ratio r: select blocks from the oracle's scores and from the predicted scores with the same
rule (`select_by_ratio`, forced sink/local blocks included), then

    recall = |kept_pred ∩ kept_oracle \\ forced| / |kept_oracle \\ forced|

**Forced blocks are excluded from the count.** Both selections always keep them, so counting them would reward
the predictor for blocks it never chose: at 4K tokens with b = 64, r = 0.4, the two forced blocks are 2 of 26
kept blocks, and a predictor that picked at random would already score 0.43 instead of 0.39. Excluding them
measures exactly the choices the predictor makes. (Both selections keep the same number of blocks, so this
recall also equals precision.) When the oracle keeps no unforced block the recall is 1.0 (nothing to miss).

`mass_recall` is a softer companion: the oracle informativeness of the blocks the predictor kept, divided by
that of the blocks the oracle kept (unforced blocks only); 1.0 means the predictor's choice is as informative
as the best one, even if it swapped near-ties.
"""

from __future__ import annotations

from functools import partial

import torch

from lemo.ops import select_by_ratio
from lemo.ops.select_blocks import forced_blocks


def kept_mask(
    scores: torch.Tensor, keep_ratio: float, sink_blocks: int = 1, local_blocks: int = 1
) -> torch.Tensor:
    """Bool [nb]: the blocks `select_by_ratio` keeps from `scores` [nb]."""
    mask = torch.zeros(scores.shape[0], dtype=torch.bool)  # [nb]
    mask[select_by_ratio(scores.float().cpu(), keep_ratio, sink_blocks, local_blocks)] = True
    return mask


def recall(
    predicted: torch.Tensor,
    oracle: torch.Tensor,
    keep_ratio: float,
    sink_blocks: int = 1,
    local_blocks: int = 1,
    *,
    measure: str = "blocks",
    include_forced: bool = False,
) -> float:
    """How much of the oracle's choice the predictor's choice recovers (module docstring for the definitions).

    Args:
        predicted: [nb] predicted informativeness.
        oracle: [nb] oracle informativeness (`lemo.ops.block_scores`).
        measure: "blocks", the share of the oracle's kept blocks that the predictor also keeps; or "mass", the
            oracle informativeness of the predictor's kept blocks relative to the oracle's own.
        include_forced: count the always-kept sink/local blocks too (inflates recall; for comparison only).
    """
    if measure not in ("blocks", "mass"):
        raise ValueError(f"measure must be 'blocks' or 'mass', got {measure!r}.")
    kp, ko = _kept_pair(predicted, oracle, keep_ratio, sink_blocks, local_blocks, include_forced)
    if measure == "blocks":
        total = int(ko.sum())
        return 1.0 if total == 0 else int((kp & ko).sum()) / total
    o = oracle.float().cpu()  # [nb]
    best = float(o[ko].sum())
    return 1.0 if best <= 0.0 else float(o[kp].sum()) / best


def _named(measure: str, doc: str) -> partial[float]:
    """`recall` with `measure` fixed, documented and homed here like a function of this module."""
    fn = partial(recall, measure=measure)
    fn.__doc__, fn.__module__ = doc, __name__
    return fn


# The two measures under their own names (the calibration report's columns).
block_recall = _named(
    "blocks", "Share of the oracle's kept blocks that the predictor also keeps (see `recall`)."
)
mass_recall = _named("mass", "Oracle informativeness of the predictor's choice relative to the oracle's own.")


def _kept_pair(
    predicted: torch.Tensor,
    oracle: torch.Tensor,
    keep_ratio: float,
    sink: int,
    local: int,
    include_forced: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bool [nb] masks of the blocks kept from the predicted and from the oracle scores, by the same rule; the
    forced sink/local blocks are dropped from both unless `include_forced` (both always keep them)."""
    if predicted.shape != oracle.shape:
        raise ValueError(
            f"predicted {tuple(predicted.shape)} and oracle {tuple(oracle.shape)} scores differ in shape."
        )
    kp = kept_mask(predicted, keep_ratio, sink, local)  # [nb]
    ko = kept_mask(oracle, keep_ratio, sink, local)  # [nb]
    if not include_forced:
        free = ~forced_blocks(oracle.shape[0], sink, local)  # [nb]
        kp, ko = kp & free, ko & free
    return kp, ko
