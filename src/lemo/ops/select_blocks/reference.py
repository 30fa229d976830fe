"""Turn block scores into the kept block ids of one sequence (design.md section 1, step 3)."""

from __future__ import annotations

import math

import torch


def forced_blocks(nb: int, sink_blocks: int, local_blocks: int) -> torch.Tensor:
    """Block ids always kept: the first `sink_blocks` and the last `local_blocks` (bool mask [nb])."""
    forced = torch.zeros(nb, dtype=torch.bool)
    forced[: min(sink_blocks, nb)] = True
    if local_blocks:
        forced[max(nb - local_blocks, 0) :] = True
    return forced


def select_by_ratio(
    scores: torch.Tensor, keep_ratio: float, sink_blocks: int, local_blocks: int
) -> torch.Tensor:
    """Keep max(ceil(keep_ratio * nb), #forced) blocks: the forced ones, then the best-scoring others.

    Args:
        scores: [nb] informativeness I_n.
    Returns:
        [k] int64 block ids in increasing order.
    """
    nb = scores.shape[0]
    forced = forced_blocks(nb, sink_blocks, local_blocks).to(scores.device)  # [nb]
    n_keep = min(nb, max(math.ceil(keep_ratio * nb - 1e-9), int(forced.sum())))
    # Forced blocks rank first; among the rest, higher scores first; a stable sort breaks ties by position.
    rank_key = torch.where(forced, torch.full_like(scores, float("inf")), scores.float())  # [nb]
    order = torch.sort(rank_key, descending=True, stable=True).indices  # [nb]
    return torch.sort(order[:n_keep]).values


def select_by_threshold(
    scores: torch.Tensor, threshold: float, sink_blocks: int, local_blocks: int
) -> torch.Tensor:
    """Keep every block with I_n >= threshold * max I_n, plus the forced ones. Returns sorted [k] int64 ids."""
    nb = scores.shape[0]
    forced = forced_blocks(nb, sink_blocks, local_blocks).to(scores.device)  # [nb]
    keep = forced | (scores >= threshold * scores.max())  # [nb]
    return torch.nonzero(keep).flatten()


def blocks_to_tokens(blocks: torch.Tensor, block_size: int, length: int) -> torch.Tensor:
    """Token offsets [n] covered by sorted block ids, clipped to a sequence of `length` tokens (partial last block)."""
    offs = torch.arange(block_size, device=blocks.device)  # [b]
    tokens = (blocks[:, None] * block_size + offs[None, :]).flatten()  # [k*b]
    return tokens[tokens < length]
