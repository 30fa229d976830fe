"""What the quality benchmarks share: one timed fine-tune with its one-line summary."""

from __future__ import annotations

import time

from lemo.train.config import FinetuneConfig
from lemo.train.loop import FinetuneResult, finetune


def timed_finetune(name: str, cfg: FinetuneConfig) -> tuple[FinetuneResult, float]:
    """Run `cfg`, print "name: loss first -> last in N s", return the result and the training seconds."""
    t0 = time.perf_counter()
    result = finetune(cfg)
    seconds = time.perf_counter() - t0
    print(f"{name}: loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f} in {seconds:.0f} s", flush=True)
    return result, seconds
