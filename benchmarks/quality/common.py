"""What the quality benchmarks share: the provenance of every CSV row, and one timed fine-tune."""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
import time
from datetime import datetime, timezone

import torch

from lemo.train.config import FinetuneConfig
from lemo.train.loop import FinetuneResult, finetune


def timed_finetune(name: str, cfg: FinetuneConfig) -> tuple[FinetuneResult, float]:
    """Run `cfg`, print "name: loss first -> last in N s", return the result and the training seconds."""
    t0 = time.perf_counter()
    result = finetune(cfg)
    seconds = time.perf_counter() - t0
    print(f"{name}: loss {result.losses[0]:.3f} -> {result.losses[-1]:.3f} in {seconds:.0f} s", flush=True)
    return result, seconds


def provenance(argv: list[str] | None) -> dict[str, str]:
    """GPU, versions, commit (LEMO_COMMIT), time and the command line: what each results row records."""
    cuda = torch.cuda.is_available()
    return {
        "gpu": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__,
        "transformers": md.version("transformers"),
        "peft": md.version("peft"),
        "commit": os.environ.get("LEMO_COMMIT", "unknown"),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]),
    }
