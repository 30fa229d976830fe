"""What a sparse layer needs from a decoder layer, independent of any model library.

The integration layer fills these from a model's modules each forward (so adapters injected after `apply`,
e.g. by PEFT, are picked up); the sparse forward only calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Module = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class AttentionParts:
    q_proj: Module
    k_proj: Module
    v_proj: Module
    o_proj: Module
    num_heads: int
    num_kv_heads: int
    head_dim: int
    scaling: float
    q_norm: Module | None = None  # per-head norms before RoPE (Qwen3)
    k_norm: Module | None = None
    sliding_window: int | None = None
    dropout: float = 0.0

    def project_qk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-RoPE q [N, H, D] and k [N, H_kv, D] of rows x [N, d] (what the oracle scores)."""
        q = self.q_proj(x).view(x.shape[0], self.num_heads, self.head_dim)  # [N, H, D]
        k = self.k_proj(x).view(x.shape[0], self.num_kv_heads, self.head_dim)  # [N, H_kv, D]
        if self.q_norm is not None:
            q = self.q_norm(q)
        if self.k_norm is not None:
            k = self.k_norm(k)
        return q, k


@dataclass
class LayerParts:
    index: int
    input_norm: Module
    post_norm: Module
    mlp: Module
    attn: AttentionParts
    # Frozen SwiGLU weights (gate [I, d], up [I, d], down [d, I]) for mlp="channels"; None if the MLP has adapters.
    mlp_weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
