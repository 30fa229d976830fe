"""Scorers: who says how informative each block of a segment is. The oracle is the definition.

This module is the only place where the scorer protocol and the oracle are written down. Everything that needs a
block's informativeness goes through them, so that what is measured is what training runs:
- training: `lemo.sparsity.selection.select_rows` calls a `BlockScorer` (the `OracleScorer`, or predictors
  through `lemo.predictor.PredictorSet.as_scorer()`);
- the budget search: `lemo.sparsity.budget.measure_damage` takes a `BlockScorer` (default `OracleScorer()`);
- calibration: the predictors' training targets are `oracle_map`, the map before the reduction to I_n.
"""

from __future__ import annotations

from typing import Protocol

import torch

from lemo.ops import block_score_map, informativeness
from lemo.sparsity.parts import LayerParts


class BlockScorer(Protocol):
    def __call__(self, parts: LayerParts, x: torch.Tensor, block_size: int) -> torch.Tensor:
        """Informativeness I_n [nb] of one segment from its normed hidden states x [n, d].

        `parts.index` says which layer is scored (a predictor set picks its layer's predictor by it).
        """


@torch.no_grad()
def oracle_map(
    parts: LayerParts, x: torch.Tensor, block_size: int, backend: str | None = None
) -> torch.Tensor:
    """The oracle block map S [nb, nb] (float32) of normed hidden states x [n, d] at the layer `parts` describes.

    Exact and tiled, from the layer's own pre-RoPE q and k (adapters included); see `lemo.ops.block_scores`.
    """
    q, k = parts.attn.project_qk(x)  # [n, H, D], [n, H_kv, D]
    return block_score_map(q, k, block_size, backend=backend).float()  # [nb, nb]


class OracleScorer:
    """The `BlockScorer` of the definition: I_n of `oracle_map` (what predictors approximate)."""

    def __init__(self, backend: str | None = None) -> None:
        self.backend = backend

    @torch.no_grad()
    def __call__(self, parts: LayerParts, x: torch.Tensor, block_size: int) -> torch.Tensor:
        return informativeness(oracle_map(parts, x, block_size, self.backend))  # [nb]
