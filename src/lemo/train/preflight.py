"""Before weights load, and when memory runs out: what `lemo plan` says about this run.

`lemo finetune` plans first (`--no-plan` skips it): a run that will not fit stops before anything reaches the GPU,
with the plan and what to change. An out-of-memory during training gets the measured peak beside the plan's
advice instead of a bare CUDA traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

import torch

from lemo.config import PlanConfig
from lemo.plan import Plan, check_fits, explain_oom, predict
from lemo.train.distributed import launched_world_size

log = logging.getLogger(__name__)


def plan_config(cfg: Any) -> PlanConfig:
    """The PlanConfig of a resolved `FinetuneConfig` in this process: under torchrun each GPU holds 1/N of the
    weights (FSDP2), and the ranks of one node share its host memory."""
    world = launched_world_size()
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world) or world)
    return PlanConfig.from_finetune(cfg, world_size=world, ranks_per_node=min(per_node, world))


def preflight(cfg: Any, device: torch.device) -> Plan | None:
    """The plan of a resolved `FinetuneConfig`, refused with ValueError when it will not fit on `device`.

    A run the planner cannot model (an unusual config.json) is not blocked: it trains with a warning.
    """
    try:
        plan = predict(plan_config(cfg))
    except (ValueError, OSError, KeyError, TypeError) as err:
        log.warning(
            "lemo plan cannot model this run (%s); training without a plan (--no-plan hides this).", err
        )
        return None
    return check_fits(plan, device)


@contextlib.contextmanager
def explain_out_of_memory(plan: Plan | None, device: torch.device) -> Iterator[None]:
    """Turn a CUDA out-of-memory inside the block into a RuntimeError naming the peak and what to change."""
    try:
        yield
    except torch.OutOfMemoryError:
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        if plan is not None:
            message = explain_oom(plan, peak)
        else:
            message = (
                f"out of GPU memory (peak {peak or 0:.2f} GiB); `lemo plan` shows what fits, and docs/oom.md what "
                "to turn: --gradient-checkpointing, --offload cpu, --tile-tokens 8192, a lower --keep-ratio or "
                "--seq-len."
            )
        raise RuntimeError(message) from None


def first_step_note(cfg: Any, device: torch.device) -> str | None:
    """What to expect of the first step at long T on a GPU: lemo's Triton attention tunes itself once per length
    class, and at long T each candidate it times is a long kernel run."""
    sparse = cfg.sparse and cfg.sparsity.sparse_layers not in ("none", [])
    if device.type != "cuda" or not sparse or cfg.sparsity.backend == "reference" or cfg.seq_len < 65536:
        return None
    return (
        "note: the first step also compiles and tunes lemo's kernels for this length; at 256K tokens on an H200 "
        "it took about 3 minutes longer than later steps (docs/longest.md). The ETA settles after it."
    )
