"""Scorers: who says how informative each block of a segment is. The oracle is the definition."""

from __future__ import annotations

from typing import Protocol

import torch

from lemo.ops import block_scores
from lemo.sparsity.parts import LayerParts


class BlockScorer(Protocol):
    def __call__(self, parts: LayerParts, x: torch.Tensor, block_size: int) -> torch.Tensor:
        """Informativeness I_n [nb] of one segment from its normed hidden states x [n, d]."""


class OracleScorer:
    """Exact tiled block scores from the layer's own pre-RoPE q and k (adapters included)."""

    def __init__(self, backend: str | None = None) -> None:
        self.backend = backend

    @torch.no_grad()
    def __call__(self, parts: LayerParts, x: torch.Tensor, block_size: int) -> torch.Tensor:
        q, k = parts.attn.project_qk(x)  # [n, H, D], [n, H_kv, D]
        return block_scores(q, k, block_size, backend=self.backend)  # [nb]
