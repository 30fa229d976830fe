"""What the fine-tuning loop does differently in one process and in an FSDP2 job, behind one interface.

`strategy_for` picks `SingleProcess` (no torchrun, or WORLD_SIZE=1) or `Fsdp2` (torchrun with several ranks);
the loop (loop.py) calls the same methods either way: where checkpoints come from and go, how the model is
wrapped, how per-rank numbers are combined, who writes the adapter. distributed.py holds the FSDP2 pieces.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from lemo.integrations.peft import load_trainable_state, save_adapter, trainable_state
from lemo.train import distributed
from lemo.train.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from lemo.train.distributed import Dist
from lemo.train.distributed_checkpoint import check_world_size, load_sharded, read_meta, save_sharded
from lemo.train.interrupt import StopFlag

if TYPE_CHECKING:
    from lemo.config import SparsityConfig

T = TypeVar("T")


class Strategy:
    """What the loop asks of its job; `SingleProcess` and `Fsdp2` answer it."""

    sharded: bool  # the model is sharded over ranks (and the loss accumulated with every rank's labels)

    def __init__(self, ctx: Dist, device: torch.device):
        self.ctx = ctx
        self.device = device

    @property
    def is_main(self) -> bool:
        return self.ctx.is_main

    @property
    def rank(self) -> int:
        return self.ctx.rank

    @property
    def world_size(self) -> int:
        return self.ctx.world_size

    def run_on_main(self, fn: Callable[[], T]) -> T | None:
        """`fn()` on rank 0 only, the others waiting (see `distributed.run_on_main`)."""
        return distributed.run_on_main(self.ctx, str(self.device), fn)

    def where(self) -> str:
        """Where the run trains, for the opening line."""
        raise NotImplementedError

    def read_checkpoint(self, ckpt_dir: Path) -> dict[str, Any] | None:
        """The latest checkpoint to resume from (None without one)."""
        raise NotImplementedError

    def check_checkpoint(self, ckpt: dict[str, Any]) -> None:
        """Refuse a checkpoint this job cannot resume from."""
        raise NotImplementedError

    def sparsity(self, sparsity: SparsityConfig) -> SparsityConfig:
        """The token elimination settings this kind of job can run."""
        raise NotImplementedError

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model after LoRA and `lemo.apply`, ready to train."""
        raise NotImplementedError

    def restore(self, ckpt: dict[str, Any] | None, model, optimizer, scheduler, seed: int) -> int:
        """Seed this rank and load `ckpt` (when resuming) into the model, optimizer and scheduler; returns the
        step to start at."""
        raise NotImplementedError

    def save(self, ckpt_dir: Path, step: int, model, optimizer, scheduler, config: dict, seed: int) -> None:
        """A checkpoint at `step`."""
        raise NotImplementedError

    def save_adapter(self, model, out_dir: Path) -> None:
        """The trained adapter, as PEFT files in `out_dir`."""
        raise NotImplementedError

    def total(self, value: float) -> float:
        """The whole job's sum of a per-rank number."""
        raise NotImplementedError

    def mean(self, value: float) -> float:
        """The ranks' mean of a per-rank number."""
        raise NotImplementedError

    def share_stop(self, stop: StopFlag) -> None:
        """Make a Ctrl-C seen by one rank stop all of them at the same step."""
        raise NotImplementedError


class SingleProcess(Strategy):
    """One process: whole-file checkpoints, the model as it is, numbers as they are."""

    sharded = False

    def where(self) -> str:
        return str(self.device)

    def read_checkpoint(self, ckpt_dir: Path) -> dict[str, Any] | None:
        return load_checkpoint(ckpt_dir)

    def check_checkpoint(self, ckpt: dict[str, Any]) -> None:
        pass  # a whole-file checkpoint resumes in any single process

    def sparsity(self, sparsity: SparsityConfig) -> SparsityConfig:
        return sparsity

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def restore(self, ckpt: dict[str, Any] | None, model, optimizer, scheduler, seed: int) -> int:
        if ckpt is None:
            return 0
        load_trainable_state(model, ckpt["trainable"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        restore_rng_state(ckpt["rng"])
        return ckpt["step"]

    def save(self, ckpt_dir: Path, step: int, model, optimizer, scheduler, config: dict, seed: int) -> None:
        state = {
            "trainable": trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": capture_rng_state(),
            "config": config,
            "data_seed": seed,
        }
        save_checkpoint(ckpt_dir, step, state)

    def save_adapter(self, model, out_dir: Path) -> None:
        save_adapter(model, out_dir)

    def total(self, value: float) -> float:
        return value

    def mean(self, value: float) -> float:
        return value

    def share_stop(self, stop: StopFlag) -> None:
        pass  # the flag is this process's already


class Fsdp2(Strategy):
    """One rank of a torchrun job: the model sharded by FSDP2, sharded checkpoints, collectives over ranks."""

    sharded = True

    def where(self) -> str:
        return f"{self.ctx.world_size} ranks ({self.ctx.backend}, FSDP2)"

    def read_checkpoint(self, ckpt_dir: Path) -> dict[str, Any] | None:
        # Sharded checkpoints are read after the model is sharded (`restore`); here only their meta.json.
        return read_meta(ckpt_dir)

    def check_checkpoint(self, ckpt: dict[str, Any]) -> None:
        check_world_size(ckpt, self.ctx)

    def sparsity(self, sparsity: SparsityConfig) -> SparsityConfig:
        # FSDP2 hands each layer its input through an autograd Function, and autograd forbids updating such a
        # tensor in place; the out-of-place residual add computes the same numbers.
        if sparsity.inplace_residual:
            return dataclasses.replace(sparsity, inplace_residual=False)
        return sparsity

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        # After LoRA and apply, which only set attributes and hooks that the FSDP class swap keeps.
        distributed.shard(model, self.ctx, str(self.device))
        return model

    def restore(self, ckpt: dict[str, Any] | None, model, optimizer, scheduler, seed: int) -> int:
        # Each rank its own random stream (random blocks, dropout) so ranks do not draw alike; a resume restores
        # each rank's stream from its checkpoint.
        torch.manual_seed(seed + self.ctx.rank)
        if ckpt is None:
            return 0
        return load_sharded(ckpt, model, optimizer, scheduler, self.ctx, str(self.device))

    def save(self, ckpt_dir: Path, step: int, model, optimizer, scheduler, config: dict, seed: int) -> None:
        save_sharded(ckpt_dir, step, model, optimizer, scheduler, config, self.ctx)

    def save_adapter(self, model, out_dir: Path) -> None:
        distributed.save_adapter(model, out_dir, self.ctx)

    def total(self, value: float) -> float:
        return distributed.all_sum(value, self.ctx, str(self.device))

    def mean(self, value: float) -> float:
        return distributed.all_sum(value, self.ctx, str(self.device)) / self.ctx.world_size

    def share_stop(self, stop: StopFlag) -> None:
        stop.requested = distributed.any_rank(stop.requested, self.ctx, str(self.device))


def strategy_for(ctx: Dist, device: torch.device) -> Strategy:
    """`Fsdp2` when this process is one rank of several, else `SingleProcess`."""
    return Fsdp2(ctx, device) if ctx.enabled else SingleProcess(ctx, device)
