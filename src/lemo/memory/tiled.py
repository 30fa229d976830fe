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

RowFunction = Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]


def _as_tuple(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


def _run_tiles(fn: RowFunction, xs: tuple[torch.Tensor, ...], tile: int) -> tuple[torch.Tensor, ...]:
    pieces = [_as_tuple(fn(*(x[s : s + tile] for x in xs))) for s in range(0, xs[0].shape[0], tile)]
    return tuple(torch.cat(parts) for parts in zip(*pieces))  # each [M, ...]


class _TiledRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fn, tile, n_in, _anchor, *xs):
        ctx.fn, ctx.tile, ctx.n_in = fn, tile, n_in
        ctx.rng = _RngState(xs[0].device)
        ctx.autocast = _autocast(xs[0].device)
        ctx.save_for_backward(*xs)
        return _run_tiles(fn, xs, tile)

    @staticmethod
    def backward(ctx, *grads):
        xs = ctx.saved_tensors
        need = ctx.needs_input_grad[4:]
        dxs = [torch.empty_like(x) if n else None for x, n in zip(xs, need)]  # each [M, ...]
        devices = [xs[0].device] if xs[0].device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), ctx.autocast:
            ctx.rng.restore()  # the tiles draw their dropout masks in the forward's order
            for s in range(0, xs[0].shape[0], ctx.tile):
                ts = [x[s : s + ctx.tile].detach().requires_grad_(n) for x, n in zip(xs, need)]  # [tile, ...]
                outs = _as_tuple(ctx.fn(*ts))
                pairs = [
                    (o, g[s : s + ctx.tile]) for o, g in zip(outs, grads) if g is not None and o.requires_grad
                ]
                if pairs:
                    torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
                for dx, t in zip(dxs, ts):
                    if dx is not None:
                        dx[s : s + ctx.tile] = t.grad if t.grad is not None else 0
        return None, None, None, None, *dxs


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
    (y,) = tiled_rows_many(fn, (x.reshape(m, x.shape[-1]),), tile)  # [M, d_out]
    return y.view(*lead, y.shape[-1])


def tiled_rows_many(fn: RowFunction, xs: tuple[torch.Tensor, ...], tile: int) -> tuple[torch.Tensor, ...]:
    """`fn(*xs)` for a function of row-aligned inputs (each [M, ...]) that treats rows independently, returning
    one or more [M, ...] tensors, computed `tile` rows at a time. Only the inputs are kept for backward."""
    if tile <= 0 or xs[0].shape[0] <= tile:
        return _as_tuple(fn(*xs))
    if not torch.is_grad_enabled():  # forward of a checkpointed layer: no graph, just bounded memory
        return _run_tiles(fn, xs, tile)
    anchor = torch.empty(0, device=xs[0].device, requires_grad=True)  # puts adapter gradients in the graph
    return _TiledRows.apply(fn, tile, len(xs), anchor, *xs)
