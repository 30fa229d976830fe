"""The torch device and dtype a command runs on, from its --device and --dtype ("auto" or a name)."""

from __future__ import annotations

import torch


def resolve_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device} asks for CUDA, but no GPU is visible; use --device cpu.")
    if dtype == "auto":
        dtype = "bf16" if dev.type == "cuda" else "fp32"
    return dev, torch.bfloat16 if dtype == "bf16" else torch.float32
