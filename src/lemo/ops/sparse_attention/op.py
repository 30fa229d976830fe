"""Dispatch for the sparse attention among kept tokens."""

from __future__ import annotations

import importlib

import torch

from lemo.config.sparsity import uses_sdpa
from lemo.ops._dispatch import resolve_backend
from lemo.ops.sparse_attention import reference


def _kernels(name: str):
    """The Triton module `name` of this op (triton, triton_rows, triton_query), or None without Triton."""
    try:
        return importlib.import_module(f"lemo.ops.sparse_attention.{name}")
    except ImportError:
        return None


# The attention dispatchers take the reference's arguments plus `backend`; written compactly (fmt: skip), since
# they only forward them.


def _autocast(*ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """q, k, v as SDPA sees them under autocast: in the autocast dtype. RoPE's fp32 tables make q and k fp32 while v
    stays in the autocast dtype; the dense layer's SDPA casts all three, so lemo's kernels do the same (the
    reference's lower-right causal mask dispatches past SDPA's autocast wrapper, and Triton takes one dtype)."""
    device = ts[0].device.type
    if not torch.is_autocast_enabled(device):
        return ts
    dtype = torch.get_autocast_dtype(device)
    return tuple(t.to(dtype) for t in ts)


def varlen_causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: list[int], scale: float,
    positions: torch.Tensor | None = None, sliding_window: int | None = None, dropout_p: float = 0.0,
    backend: str | None = None, kernel: str = "lemo",
) -> torch.Tensor:  # fmt: skip
    """See `reference.varlen_causal_attention`; shapes q [N, H, D], k/v [N, H_kv, D] -> [N, H, D].

    `kernel` (SparsityConfig.attention_kernel) chooses between SDPA and lemo's Triton kernel where the backend
    resolves to Triton; the reference backend is SDPA already."""
    q, k, v = _autocast(q, k, v)
    impl = _kernels("triton")
    usable = impl is not None and sliding_window is None and dropout_p == 0.0
    sdpa = uses_sdpa(kernel, len(cu_seqlens) - 1, q.shape[0], grouped=k.shape[1] < q.shape[1])
    if resolve_backend(backend, q.device, has_triton_impl=usable) == "triton" and not sdpa:
        return impl.varlen_causal_attention(q, k, v, cu_seqlens, scale)
    return reference.varlen_causal_attention(q, k, v, cu_seqlens, scale, positions, sliding_window, dropout_p)


def add_rows(
    residual: torch.Tensor, rows: torch.Tensor, update: torch.Tensor, backend: str | None = None
) -> torch.Tensor:
    """See `reference.add_rows`: residual [M, d] with update [N, d] added at distinct rows [N]; a new tensor."""
    impl = _kernels("triton_rows")
    if resolve_backend(backend, residual.device, has_triton_impl=impl is not None) == "triton":
        return impl.add_rows(residual, rows, update)
    return reference.add_rows(residual, rows, update)


def add_rows_(
    residual: torch.Tensor, rows: torch.Tensor, update: torch.Tensor, backend: str | None = None
) -> torch.Tensor:
    """residual[rows] += update in place (permutation-free update); autograd saves only `rows`.

    Safe only on a buffer no other autograd node saved (the version counter raises otherwise): the sparse layer
    norms the gathered kept rows, not the full input, so its input is free to be updated (see docs/kernels.md).
    """
    impl = _kernels("triton_rows")
    if resolve_backend(backend, residual.device, has_triton_impl=impl is not None) == "triton":
        return impl.add_rows_(residual, rows, update)
    return residual.index_add_(0, rows, update.to(residual.dtype))


def query_rows_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_index: torch.Tensor, cu_q: list[int], cu_kv: list[int],
    scale: float, sliding_window: int | None = None, backend: str | None = None,
) -> torch.Tensor:  # fmt: skip
    """See `reference.query_rows_attention`: q [Nq, H, D] of chosen rows against k/v [Nkv, H_kv, D] of all rows."""
    q, k, v = _autocast(q, k, v)
    impl = _kernels("triton_query") if sliding_window is None else None  # sliding windows keep the reference
    if resolve_backend(backend, q.device, has_triton_impl=impl is not None) == "triton":
        return impl.query_rows_attention(q, k, v, q_index, cu_q, cu_kv, scale)
    return reference.query_rows_attention(q, k, v, q_index, cu_q, cu_kv, scale, sliding_window)
