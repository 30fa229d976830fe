"""`lemo bench` under torchrun: the model sharded with FSDP2 over the ranks (lemo.train.distributed), a row per
(config, T) for the whole job, written by rank 0.

    torchrun --nproc-per-node 2 -m lemo bench --shape llama3-8b --lengths 16384 32768 --configs exact lemo-random+gc

Each rank trains on its own batch of one row, so a step moves world_size x T tokens: `tokens_per_s` is the job's,
`median_step_s` the slowest rank's, and the memory columns the largest rank's (what one GPU must hold).
`weights_gib_per_gpu` is the local shard of the parameters, which FSDP2 divides by the world size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lemo.train.distributed import Dist, all_max, init, shard


def join(timeout_s: int = 600) -> tuple[Dist, torch.device | None]:
    """This process's place in a torchrun job, and its device; (Dist(), None) without torchrun."""
    ctx, device = init("auto", timeout_s=timeout_s)
    return ctx, (torch.device(device) if ctx.enabled else None)


def shard_model(model: Any, ctx: Dist, device: torch.device) -> Any:
    """FSDP2 over the ranks; lemo's configurations are applied and removed on the sharded model afterwards,
    which the distributed tests show is the same as applying them first."""
    return shard(model, ctx, str(device))


def weights_gib_per_gpu(model: Any) -> float:
    """GiB of parameters this rank holds: its shards under FSDP2, everything otherwise."""
    total = 0
    for p in model.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p  # a DTensor shard under FSDP2
        total += local.numel() * local.element_size()
    return total / 2**30


def reducer(ctx: Dist | None, device: torch.device) -> Callable[[float], float]:
    """max over ranks of a Python number (the identity with one process)."""
    if ctx is None:
        return lambda value: value
    return lambda value: all_max(value, ctx, str(device))
