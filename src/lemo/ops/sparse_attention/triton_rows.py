"""Triton kernel for the permutation-free residual update of a sparse layer.

`add_rows` / `add_rows_` add an update into chosen rows of the residual (a new tensor / in place), in fp32 and
rounded once; their backward needs only the row ids. See docs/kernels.md for the in-place caveat.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from lemo.ops._triton_reduce import interpreting as _interpreting
from lemo.ops.sparse_attention.triton import _last_dim_contiguous


@triton.jit
def _add_rows_kernel(
    OUT, RES, ROWS, UPD, n_upd, d, s_out, s_res, s_upd, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr
):
    """OUT[rows[i]] = RES[rows[i]] + UPD[i], added in fp32 and rounded once; other rows of OUT are not touched."""
    offs_r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)  # [BR] update rows
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)  # [BC]
    r_ok = offs_r < n_upd
    ok = r_ok[:, None] & (offs_c[None, :] < d)
    rows = tl.load(ROWS + offs_r, mask=r_ok, other=0).to(tl.int64)  # [BR] residual row ids
    u = tl.load(UPD + offs_r[:, None].to(tl.int64) * s_upd + offs_c[None, :], mask=ok, other=0.0).to(
        tl.float32
    )
    x = tl.load(RES + rows[:, None] * s_res + offs_c[None, :], mask=ok, other=0.0).to(tl.float32)
    tl.store(OUT + rows[:, None] * s_out + offs_c[None, :], (x + u).to(OUT.dtype.element_ty), mask=ok)


def _add_rows_launch(
    out: torch.Tensor, residual: torch.Tensor, rows: torch.Tensor, update: torch.Tensor
) -> None:
    n, d = update.shape
    if n == 0:
        return
    br, bc = (16, 32) if _interpreting() else (16, 256)
    grid = (triton.cdiv(n, br), triton.cdiv(d, bc))
    _add_rows_kernel[grid](
        out, residual, rows, update, n, d, out.stride(0), residual.stride(0), update.stride(0),
        BLOCK_R=br, BLOCK_C=bc,
    )  # fmt: skip


def _add_and_save(
    ctx, out: torch.Tensor, residual: torch.Tensor, rows: torch.Tensor, update: torch.Tensor
) -> None:
    """out[rows] = residual[rows] + update, and what `_RowsAdd.backward` needs: the row ids, the update's dtype."""
    _add_rows_launch(
        out, residual, rows, update.to(residual.dtype) if update.dtype != residual.dtype else update
    )
    ctx.save_for_backward(rows)
    ctx.update_dtype = update.dtype


class _RowsAdd(torch.autograd.Function):
    """The backward both adds share: d residual = grad, d update = grad[rows]; it needs only the row ids."""

    @staticmethod
    def backward(ctx, grad):
        (rows,) = ctx.saved_tensors
        return grad, None, grad.index_select(0, rows).to(ctx.update_dtype)


class _AddRowsInplace(_RowsAdd):
    """residual[rows] += update in place; autograd saves only rows."""

    @staticmethod
    def forward(ctx, residual, rows, update):
        _add_and_save(ctx, residual, residual, rows, update)
        ctx.mark_dirty(residual)
        return residual


class _AddRows(_RowsAdd):
    """Out-of-place residual.index_add(0, rows, update): one copy plus the fused add at the kept rows."""

    @staticmethod
    def forward(ctx, residual, rows, update):
        out = residual.clone()  # [M, d] rows outside K are the residual unchanged
        _add_and_save(ctx, out, residual, rows, update)
        return out


def _check_rows(residual: torch.Tensor, rows: torch.Tensor, update: torch.Tensor) -> None:
    if residual.dim() != 2 or update.dim() != 2 or update.shape != (rows.numel(), residual.shape[1]):
        raise ValueError(f"expected residual [M, d], rows [N], update [N, d]; got {tuple(residual.shape)}, "
                         f"{tuple(rows.shape)}, {tuple(update.shape)}.")  # fmt: skip
    if residual.stride(1) != 1 or update.stride(1) != 1:
        raise ValueError("residual and update need a contiguous last dimension.")


def add_rows(residual: torch.Tensor, rows: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """`reference.add_rows` (a new tensor) in one fused pass over the kept rows. rows must be distinct."""
    update = _last_dim_contiguous(update)
    _check_rows(residual, rows, update)
    return _AddRows.apply(residual, rows, update)


def add_rows_(residual: torch.Tensor, rows: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """residual[rows] += update in place (the permutation-free update); returns residual. rows must be distinct.

    Autograd saves nothing but `rows`: the add's own backward never needs the pre-add residual. Only use it on a
    buffer that no other autograd node saved (for example not the input of a norm that is still to be
    differentiated): autograd's version counter then raises instead of computing a wrong gradient.
    """
    update = _last_dim_contiguous(update)
    _check_rows(residual, rows, update)
    return _AddRowsInplace.apply(residual, rows, update)


__all__ = ["add_rows", "add_rows_"]
