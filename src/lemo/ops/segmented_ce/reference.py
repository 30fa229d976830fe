"""LM head + cross-entropy in segments, so the [N, V] logits never exist at once (docs/design.md section 1, step 7).

Each segment's logits are made, reduced to a summed loss and dropped; activation checkpointing makes the
backward rebuild them one segment at a time too. Peak extra memory is one segment's [chunk, V] in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from lemo.ops.segmented_ce.contract import mean_loss


def _segment_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    ignore_index: int,
) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias).float()  # [n, V]; fp32 like HF's loss upcast
    return F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")


def _summed_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    chunk: int,
    ignore_index: int,
) -> torch.Tensor:
    """The summed loss over the scored rows, one checkpointed segment of `chunk` rows at a time."""
    total = hidden.new_zeros((), dtype=torch.float32)
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    for s in range(0, hidden.shape[0], chunk):
        h, y = hidden[s : s + chunk], labels[s : s + chunk]  # [n, d], [n]
        if needs_grad:
            total = total + checkpoint(_segment_loss, h, weight, bias, y, ignore_index, use_reentrant=False)
        else:
            total = total + _segment_loss(h, weight, bias, y, ignore_index)
    return total


segmented_cross_entropy = mean_loss(_summed_loss)
