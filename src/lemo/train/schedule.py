"""Learning-rate schedules: linear warm-up from 0, then constant, linear or cosine decay (transformers' own)."""

from __future__ import annotations

import torch
from transformers import get_scheduler

_NAMES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


def build_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int, steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """One scheduler step per optimizer step. On resume, load the saved state_dict: it restores the step
    count, and the curve is recomputed from `steps`, so raising --steps stretches the decay."""
    if schedule not in _NAMES:
        raise ValueError(f"--lr-schedule {schedule!r} is unknown; use constant, linear or cosine.")
    return get_scheduler(_NAMES[schedule], optimizer, num_warmup_steps=warmup_steps, num_training_steps=steps)
