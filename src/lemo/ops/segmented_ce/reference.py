"""LM head + cross-entropy in segments, so the [N, V] logits never exist at once (docs/design.md section 1, step 7).

Each segment's logits are made, reduced to a summed loss and dropped; activation checkpointing makes the
backward rebuild them one segment at a time too. Peak extra memory is one segment's [chunk, V] in fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def _segment_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    labels: torch.Tensor,
    ignore_index: int,
) -> torch.Tensor:
    logits = F.linear(hidden, weight, bias).float()  # [n, V]; fp32 like HF's loss upcast
    return F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction="sum")


def segmented_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    chunk: int = 2048,
    ignore_index: int = -100,
    num_items: int | torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean next-token cross-entropy of `hidden @ weight.T` against already shifted `labels`.

    Args:
        hidden: [N, d] final hidden states (after the final norm).
        weight: [V, d] LM-head weight; bias: optional [V].
        labels: [N] target ids, `ignore_index` where nothing is scored.
        chunk: rows per segment.
        num_items: divisor (HF's `num_items_in_batch` for gradient accumulation); default: scored rows.

    Returns:
        scalar fp32 loss, equal to HF's causal-LM loss on the same inputs.
    """
    if hidden.shape[0] != labels.shape[0]:
        raise ValueError(f"hidden has {hidden.shape[0]} rows but labels has {labels.shape[0]}.")
    total = hidden.new_zeros((), dtype=torch.float32)
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    for s in range(0, hidden.shape[0], chunk):
        h, y = hidden[s : s + chunk], labels[s : s + chunk]  # [n, d], [n]
        if needs_grad:
            total = total + checkpoint(_segment_loss, h, weight, bias, y, ignore_index, use_reentrant=False)
        else:
            total = total + _segment_loss(h, weight, bias, y, ignore_index)
    denom = num_items if num_items is not None else (labels != ignore_index).sum()
    if isinstance(denom, torch.Tensor):
        denom = denom.to(total.device)
    return total / denom
