"""What a sparse layer needs from a decoder layer, independent of any model library.

The integration layer fills these from a model's modules each forward (so adapters injected after `apply`,
e.g. by PEFT, are picked up); the sparse forward only calls them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from lemo.ops import apply_rope, varlen_causal_attention

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
    # A fused RoPE for q [N, H, D] and k [N, H_kv, D] at once (Liger's, when the model is patched with it:
    # lemo.integrations.liger.fused_rope); None: lemo's reference apply_rope.
    rope: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None

    def project_qk(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-RoPE q [N, H, D] and k [N, H_kv, D] of rows x [N, d] (what the oracle scores)."""
        q = self.q_proj(x).view(x.shape[0], self.num_heads, self.head_dim)  # [N, H, D]
        k = self.k_proj(x).view(x.shape[0], self.num_kv_heads, self.head_dim)  # [N, H_kv, D]
        if self.q_norm is not None:
            q = self.q_norm(q)
        if self.k_norm is not None:
            k = self.k_norm(k)
        return q, k

    def attend(
        self,
        xk: torch.Tensor,
        cos_k: torch.Tensor,
        sin_k: torch.Tensor,
        cu_seqlens: list[int],
        *,
        positions: torch.Tensor | None = None,
        dropout_p: float = 0.0,
        backend: str | None = None,
        kernel: str = "auto",
    ) -> torch.Tensor:
        """The attention sublayer on kept rows only: o_proj(causal attention among xk) [N, d].

        The one kept-rows attention of lemo: the sparse layer's forward and the budget search both call it.

        Args:
            xk: [N, d] normed kept rows, segment after segment (`cu_seqlens` S+1 offsets).
            cos_k, sin_k: [N, D] RoPE tables at the rows' original positions.
            positions: [N] original positions, needed only for sliding-window attention.
        """
        q, k, v = self.qkv(xk, cos_k, sin_k)
        o = self.core(
            q, k, v, cu_seqlens, positions=positions, dropout_p=dropout_p, backend=backend, kernel=kernel
        )  # [N, H*D]
        return self.o_proj(o)  # [N, d]

    def qkv(
        self, xk: torch.Tensor, cos_k: torch.Tensor, sin_k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Row-wise first half of `attend`: q [N, H, D], k and v [N, H_kv, D], RoPE applied (tileable by rows)."""
        n = xk.shape[0]
        q, k = self.project_qk(xk)  # [N, H, D], [N, H_kv, D]
        v = self.v_proj(xk).view(n, self.num_kv_heads, self.head_dim)  # [N, H_kv, D]
        if self.rope is not None:
            return (*self.rope(q, k, cos_k, sin_k), v)
        return apply_rope(q, cos_k, sin_k), apply_rope(k, cos_k, sin_k), v

    def core(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        cu_seqlens: list[int],
        *,
        positions: torch.Tensor | None = None,
        dropout_p: float = 0.0,
        backend: str | None = None,
        kernel: str = "auto",
    ) -> torch.Tensor:
        """The part of `attend` that mixes rows: causal attention per segment, heads merged: [N, H*D].
        `kernel`: SparsityConfig.attention_kernel (SDPA or lemo's varlen kernel where Triton runs)."""
        o = varlen_causal_attention(
            q,
            k,
            v,
            cu_seqlens,
            self.scaling,
            positions=positions,
            sliding_window=self.sliding_window,
            dropout_p=dropout_p,
            backend=backend,
            kernel=kernel,
        )  # [N, H, D]
        return o.reshape(q.shape[0], self.num_heads * self.head_dim)  # [N, H*D]


@dataclass
class LayerParts:
    index: int
    input_norm: Module
    post_norm: Module
    mlp: Module
    attn: AttentionParts
    # Frozen SwiGLU weights (gate [I, d], up [I, d], down [d, I]) for mlp="channels"; None if the MLP has adapters.
    mlp_weights: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
