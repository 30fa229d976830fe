"""Row-tiled computation of a row-wise function (the MLP), recomputed tile by tile in backward.

An MLP over T rows holds [T, intermediate] activations (gate, up, their product) for backward: at 512K tokens
of Llama-3-8B that is 14 GiB per tensor. Rows are independent, so running the function on `tile` rows at a
time and keeping only its input bounds the working set by the tile; backward runs each tile again with
autograd on and backpropagates it, accumulating parameter gradients across tiles (the ALST / Unsloth scheme,
written here because it has to work inside lemo's own checkpointed sublayer and on kept rows).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lemo.memory.checkpoint import _autocast, _RngState

RowFunction = Callable[[torch.Tensor], torch.Tensor]


class _TiledRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn, tile, x, _anchor):
        ctx.fn, ctx.tile = fn, tile
        ctx.rng = _RngState(x.device)
        ctx.autocast = _autocast(x.device)
        ctx.save_for_backward(x)
        return torch.cat([fn(t) for t in x.split(tile)])  # [M, d_out]

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        need_x = ctx.needs_input_grad[2]
        dx = torch.empty_like(x) if need_x else None  # [M, d]
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), ctx.autocast:
            ctx.rng.restore()  # the tiles draw their dropout masks in the forward's order
            for start in range(0, x.shape[0], ctx.tile):
                xt = x[start : start + ctx.tile].detach().requires_grad_(need_x)  # [tile, d]
                yt = ctx.fn(xt)  # [tile, d_out]
                if yt.requires_grad:
                    torch.autograd.backward(yt, grad[start : start + ctx.tile])
                if need_x:
                    dx[start : start + ctx.tile] = xt.grad if xt.grad is not None else 0
        return None, None, dx, None


def tiled_rows(fn: RowFunction, x: torch.Tensor, tile: int) -> torch.Tensor:
    """`fn(x)` for a row-wise `fn`, computed `tile` rows at a time; equal to `fn(x)` up to rounding.

    Args:
        x: [..., d] rows in the last dimension; leading dimensions are flattened into M rows.
        tile: rows per tile; 0, or a tile covering every row, calls `fn(x)` unchanged.
    """
    lead = x.shape[:-1]
    m = x[..., 0].numel()
    if tile <= 0 or m <= tile:
        return fn(x)
    flat = x.reshape(m, x.shape[-1])  # [M, d]
    if not torch.is_grad_enabled():  # forward of a checkpointed layer: no graph, just bounded memory
        y = torch.cat([fn(t) for t in flat.split(tile)])  # [M, d_out]
    else:
        anchor = torch.empty(0, device=x.device, requires_grad=True)  # puts adapter gradients in the graph
        y = _TiledRows.apply(fn, tile, flat, anchor)  # [M, d_out]
    return y.view(*lead, y.shape[-1])
