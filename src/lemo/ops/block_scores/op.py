"""Dispatch for block scoring. Scores are computed without gradient: selection is not differentiable."""

from __future__ import annotations

import torch

from lemo.ops._dispatch import resolve_backend
from lemo.ops.block_scores import reference


def _triton_impl():
    try:
        from lemo.ops.block_scores import triton as impl
    except ImportError:
        return None
    return impl


@torch.no_grad()
def block_score_map(
    q: torch.Tensor, k: torch.Tensor, block_size: int, backend: str | None = None
) -> torch.Tensor:
    """[nb, nb] lower-triangular block map of one sequence; q [T, H, D], k [T, H_kv, D] pre-RoPE."""
    impl = _triton_impl()
    if resolve_backend(backend, q.device, has_triton_impl=impl is not None) == "triton":
        return impl.block_score_map(q, k, block_size)
    return reference.block_score_map(q, k, block_size)


@torch.no_grad()
def block_scores(
    q: torch.Tensor, k: torch.Tensor, block_size: int, backend: str | None = None
) -> torch.Tensor:
    """Per-block informativeness I_n [nb] of one sequence."""
    return reference.informativeness(block_score_map(q, k, block_size, backend))
