"""Activation checkpointing whose stored input waits in host memory (`offloaded_checkpoint`).

Why not torch.utils.checkpoint: its non-reentrant form keeps the inputs alive through a closure, out of reach
of saved-tensor hooks, and its reentrant form would offload every tensor argument (the RoPE tables that all
layers share too). This is the reentrant algorithm with one input sent to a `HostOffloader`: forward runs
without a graph, backward loads the input, runs the function again with the same RNG state and autocast, and
backpropagates through it. The arithmetic is the same as torch's checkpoint, so results are bit-identical.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lemo.memory.host import HostOffloader


class _RngState:
    """The RNG state at forward, replayed in the recompute so dropout draws the same masks (as torch does)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def _autocast(device: torch.device) -> torch.autocast:
    kind = device.type if device.type in ("cuda", "cpu") else "cpu"
    return torch.autocast(kind, torch.get_autocast_dtype(kind), torch.is_autocast_enabled(kind))


class _OffloadedCheckpoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run, offloader, x, _anchor, *args):
        ctx.run, ctx.offloader, ctx.args = run, offloader, args
        ctx.x_grad = x.requires_grad
        ctx.rng = _RngState(x.device)
        ctx.autocast = _autocast(x.device)
        with torch.no_grad():
            out = run(x, *args)
        ctx.handle = offloader.store(x)
        ctx.tuple_out = isinstance(out, tuple)
        return out

    @staticmethod
    def backward(ctx, *grads):
        x = ctx.offloader.load(ctx.handle).detach().requires_grad_(ctx.x_grad)
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), ctx.autocast:
            ctx.rng.restore()
            out = ctx.run(x, *ctx.args)
        outs = out if ctx.tuple_out else (out,)
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        return (None, None, x.grad if ctx.x_grad else None, None, *(None for _ in ctx.args))


def offloaded_checkpoint(
    run: Callable[..., Any], offloader: HostOffloader, x: torch.Tensor, *args: Any
) -> Any:
    """`run(x, *args)` with only `x` stored, in host memory, for the recompute in backward.

    `args` are kept as they are (share them across layers: they are not copied). `run` returns a tensor or a
    tuple of tensors and may use parameters that need gradients: they are reached through the recompute.
    """
    if not torch.is_grad_enabled():  # no backward will come: nothing to store
        return run(x, *args)
    # Parameter gradients flow through the recompute, which runs only if this node is in the graph: an input
    # that needs grad puts it there even when x does not (the first layer's input from a frozen embedding).
    anchor = torch.empty(0, device=x.device, requires_grad=True)
    return _OffloadedCheckpoint.apply(run, offloader, x, anchor, *args)
