"""Rotary position embedding at arbitrary (original) positions: the cos/sin rows travel with the kept tokens."""

from __future__ import annotations

import torch


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [N, H, D] rotated by per-row cos/sin [N, D] (the HF convention: halves rotated, not interleaved)."""
    return x * cos[:, None, :] + _rotate_half(x) * sin[:, None, :]
