"""Turn block scores into the kept block ids of one sequence (docs/design.md section 1, step 3)."""

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
    scores: torch.Tensor,
    keep_ratio: float,
    sink_blocks: int,
    local_blocks: int,
    *,
    priority: torch.Tensor | list[torch.Tensor] | None = None,
    random_fraction: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Keep max(ceil(keep_ratio * nb), #forced) blocks, filled tier by tier.

    Tiers, in order: the forced blocks (sink and local), then the `priority` blocks (those holding supervised
    positions), then the rest. A tier that fits in what is left of the budget is kept whole; the tier that does
    not fit is cut: `random_fraction` of the places left go to blocks of that tier drawn uniformly at random, the
    others to its best-scoring blocks (ties by position). random_fraction=0 is the paper's top-k.

    Args:
        scores: [nb] informativeness I_n.
        priority: [nb] bool, a list of them (tiers in order: e.g. known evidence, then labelled blocks), or None.
        generator: CPU generator for the random draws (None: torch's default one, which checkpoints capture).
    Returns:
        [k] int64 block ids in increasing order.
    """
    nb = scores.shape[0]
    device = scores.device
    forced = forced_blocks(nb, sink_blocks, local_blocks).to(device)  # [nb]
    n_keep = min(nb, max(math.ceil(keep_ratio * nb - 1e-9), int(forced.sum())))
    keep = forced.clone()  # [nb]
    taken = forced.clone()  # [nb] blocks already in an earlier tier
    tiers = []
    for tier in [] if priority is None else priority if isinstance(priority, list) else [priority]:
        tiers.append(tier.to(device) & ~taken)
        taken |= tier.to(device)
    tiers.append(~taken)
    for tier in tiers:
        room = n_keep - int(keep.sum())
        if room <= 0:
            break
        candidates = torch.nonzero(tier).flatten()  # [c] in increasing order
        if candidates.numel() <= room:
            keep[candidates] = True
            continue
        n_random = round(random_fraction * room)
        # Best first; a stable sort breaks ties by position.
        order = torch.sort(scores[candidates].float(), descending=True, stable=True).indices  # [c]
        keep[candidates[order[: room - n_random]]] = True
        if n_random:
            left = candidates[order[room - n_random :]]  # [c - room + n_random]
            draw = torch.randperm(left.numel(), generator=generator)[:n_random].to(device)  # [n_random]
            keep[left[draw]] = True
        break
    return torch.nonzero(keep).flatten()


def dilate_scores(scores: torch.Tensor, width: int) -> torch.Tensor:
    """Each block's score raised to the best within `width` blocks on either side ([nb] -> [nb]), so the blocks
    beside one the scorer ranks high are ranked with it: an answer that quotes a sentence far back needs the
    quote and the passage after it, and attention finds one of them far more than the other. width=0: unchanged."""
    if width <= 0 or scores.numel() == 0:
        return scores
    pooled = torch.nn.functional.max_pool1d(scores[None, None].float(), 2 * width + 1, 1, width)  # [1, 1, nb]
    return pooled.flatten().to(scores.dtype)


def select_by_threshold(
    scores: torch.Tensor,
    threshold: float,
    sink_blocks: int,
    local_blocks: int,
    *,
    priority: torch.Tensor | list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Keep every block with I_n >= threshold * max I_n, plus the forced and `priority` ones ([nb] bool).

    Returns sorted [k] int64 ids.
    """
    nb = scores.shape[0]
    forced = forced_blocks(nb, sink_blocks, local_blocks).to(scores.device)  # [nb]
    keep = forced | (scores >= threshold * scores.max())  # [nb]
    for tier in [] if priority is None else priority if isinstance(priority, list) else [priority]:
        keep |= tier.to(scores.device)
    return torch.nonzero(keep).flatten()


def blocks_with_any(mask: torch.Tensor, block_size: int) -> torch.Tensor:
    """[nb] bool: which blocks of a sequence hold at least one True of the token mask `mask` [n]."""
    nb = -(-mask.shape[0] // block_size)
    padded = torch.zeros(nb * block_size, dtype=torch.bool, device=mask.device)  # [nb*b]
    padded[: mask.shape[0]] = mask
    return padded.view(nb, block_size).any(dim=1)


def blocks_to_tokens(blocks: torch.Tensor, block_size: int, length: int) -> torch.Tensor:
    """Token offsets [n] covered by sorted block ids, clipped to a sequence of `length` tokens (partial last block)."""
    offs = torch.arange(block_size, device=blocks.device)  # [b]
    tokens = (blocks[:, None] * block_size + offs[None, :]).flatten()  # [k*b]
    return tokens[tokens < length]
