"""Dispatch for the segmented LM-head + cross-entropy."""

from __future__ import annotations

import torch

from lemo.ops._dispatch import resolve_backend
from lemo.ops.segmented_ce import reference


def _triton_impl():
    try:
        from lemo.ops.segmented_ce import triton as impl
    except ImportError:
        return None
    return impl


def segmented_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    chunk: int = 2048,
    ignore_index: int = -100,
    num_items: int | torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    backend: str | None = None,
) -> torch.Tensor:
    """See `reference.segmented_cross_entropy`: hidden [N, d], weight [V, d], labels [N] -> scalar."""
    impl = _triton_impl()
    if resolve_backend(backend, hidden.device, has_triton_impl=impl is not None) == "triton":
        return impl.segmented_cross_entropy(hidden, weight, labels, chunk, ignore_index, num_items, bias)
    return reference.segmented_cross_entropy(hidden, weight, labels, chunk, ignore_index, num_items, bias)
