"""Sharded training checkpoints for FSDP2 runs, through torch.distributed.checkpoint (DCP).

Layout (beside the single-process ones, same `latest` pointer and retention; see checkpoint.py):

    dir/step-0000100/dcp/.metadata, __0_0.distcp, ...  trainable params + AdamW state, each rank its shard
    dir/step-0000100/rng-00000.pt ...                  each rank's RNG states (random blocks, dropout)
    dir/step-0000100/scheduler.pt                      the LR scheduler (identical on every rank; rank 0)
    dir/step-0000100/meta.json                         step, world_size, config, sha256 of every file

Atomic as the single-process save: every rank writes into one hidden temp folder, rank 0 checks the files,
writes meta.json and renames the folder into place, then `latest`. A run killed mid-save leaves the previous
checkpoint. `output_dir` must be storage every rank sees (one node, or a shared file system).
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lemo.train.checkpoint import (
    _FORMAT,
    _TMP_PREFIX,
    META,
    CheckpointError,
    _fsync,
    _prune,
    _remove_temp_dirs,
    _resolve,
    _sha256,
    _step_name,
    _write_latest,
    capture_rng_state,
    restore_rng_state,
)
from lemo.train.distributed import Dist, any_rank, barrier

DCP = "dcp"
SCHEDULER = "scheduler.pt"


def _rng_file(rank: int) -> str:
    return f"rng-{rank:05d}.pt"


def _options(strict: bool = True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    # Frozen base weights are the model's own files; a checkpoint holds only what training changes. Loading
    # is not strict, since the frozen weights are absent by design; DCP itself refuses a missing trainable one.
    return StateDictOptions(ignore_frozen_params=True, strict=strict)


def save_sharded(
    root: Path,
    step: int,
    model: nn.Module,
    optimizer,
    scheduler,
    config: dict[str, Any],
    ctx: Dist,
    keep: int = 2,
) -> Path:
    """Write `root/step-{step:07d}/` from every rank and point `root/latest` at it. Collective."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    name = _step_name(step)
    tmp = root / f"{_TMP_PREFIX}{name}-sharded"  # one name every rank agrees on without talking
    if ctx.is_main:
        root.mkdir(parents=True, exist_ok=True)
        _remove_temp_dirs(root)
        tmp.mkdir()
    barrier(ctx)
    model_sd, optim_sd = get_state_dict(model, optimizer, options=_options())
    dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(tmp / DCP))
    torch.save(capture_rng_state(), tmp / _rng_file(ctx.rank))  # JSON-like data: loads with weights_only
    if ctx.is_main:
        torch.save(scheduler.state_dict(), tmp / SCHEDULER)
    barrier(ctx)
    final = root / name
    if ctx.is_main:
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        meta = {
            "format": _FORMAT,
            "sharded": True,
            "world_size": ctx.world_size,
            "step": step,
            "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "config": config,
            "data_seed": config.get("seed"),
            "sha256": {f: _sha256(tmp / f) for f in files},
        }
        (tmp / META).write_text(json.dumps(meta, indent=1, default=str), encoding="utf-8")
        for f in [*files, META]:
            _fsync(tmp / f)
        if final.exists():  # the same step saved again (right after a resume)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_latest(root, name)
        _prune(root, step, keep)
    barrier(ctx)
    return final


def read_meta(root: Path) -> dict[str, Any] | None:
    """meta.json of the checkpoint `root/latest` names (plus "path"), None when there is none."""
    if not root.is_dir():
        return None
    folder = _resolve(root)
    if folder is None:
        return None
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        int(meta["step"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"{folder / META} is unreadable ({err}); delete {folder} to resume from the previous checkpoint, "
            "or start fresh without --resume."
        ) from err
    return {**meta, "path": folder}


def check_world_size(meta: dict[str, Any], ctx: Dist) -> None:
    """A checkpoint resumes only at the world size that wrote it: the data order and global batch depend on it."""
    saved = int(meta.get("world_size", 1)) if meta.get("sharded") else 1
    if saved == ctx.world_size:
        return
    if saved == 1:
        fix = "resume it with one process: lemo finetune ... --resume (no torchrun)"
    else:
        fix = f"resume it with torchrun --nproc-per-node {saved} (or nodes x GPUs = {saved}) -m lemo.cli finetune ... --resume"
    raise ValueError(
        f"the checkpoint {meta['path']} was written by {saved} process(es), but this run has {ctx.world_size}; "
        f"{fix}, or start a new run in another --output-dir. (Each rank's share of the data and the global "
        "batch of --batch-size x --grad-accum x ranks rows depend on the number of ranks.)"
    )


def load_sharded(meta: dict[str, Any], model: nn.Module, optimizer, scheduler, ctx: Dist, device: str) -> int:
    """Load the checkpoint `read_meta` described into the sharded model, optimizer and scheduler, and this
    rank's RNG states; returns its step. Collective."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    check_world_size(meta, ctx)
    folder: Path = meta["path"]
    bad = None
    if ctx.is_main:  # one reader of the shared folder; the others learn the verdict below
        bad = next(
            (
                f
                for f, h in meta.get("sha256", {}).items()
                if not (folder / f).is_file() or _sha256(folder / f) != h
            ),
            None,
        )
    if any_rank(bad is not None, ctx, device):
        raise CheckpointError(
            f"{folder / (bad or '')} is missing or corrupt (sha256 does not match meta.json); delete {folder} to resume "
            "from the previous checkpoint, or start fresh without --resume."
        )
    model_sd, optim_sd = get_state_dict(model, optimizer, options=_options())
    state = {"model": model_sd, "optimizer": optim_sd}
    dcp.load(state, checkpoint_id=str(folder / DCP))
    result = set_state_dict(
        model,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optimizer"],
        options=_options(strict=False),
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing = sorted(set(getattr(result, "missing_keys", [])) & trainable)
    if missing:
        raise CheckpointError(
            f"the checkpoint {folder} lacks trainable tensors {missing[:3]}; was it made with other LoRA "
            "settings? Resume with those, or start a new run in another --output-dir."
        )
    scheduler.load_state_dict(torch.load(folder / SCHEDULER, map_location="cpu", weights_only=True))
    restore_rng_state(torch.load(folder / _rng_file(ctx.rank), map_location="cpu", weights_only=True))
    barrier(ctx)
    return int(meta["step"])
