"""The forward of one sparse decoder layer (design.md section 1), built from ops.

x = input_norm(h)                       score blocks of each segment, select kept rows K
q, k, v = proj(x[K]); RoPE at original positions; causal attention among K only
h[K] += o_proj(attn)                    rows outside K skip the attention sublayer through the residual
MLP over all rows ("dense"), over K only ("tokens"), or dense with a channel-sparse backward ("channels")
"""

from __future__ import annotations

import torch

from lemo.config import SparsityConfig
from lemo.ops import (
    add_rows,
    apply_rope,
    blocks_to_tokens,
    channel_sparse_mlp,
    select_by_ratio,
    select_by_threshold,
)
from lemo.ops.sparse_attention import varlen_causal_attention
from lemo.sparsity.parts import LayerParts
from lemo.sparsity.scoring import BlockScorer
from lemo.sparsity.segments import Segment
from lemo.sparsity.state import Selection, SparsityState


def select_rows(
    parts: LayerParts,
    x: torch.Tensor,
    segments: list[Segment],
    scorer: BlockScorer,
    config: SparsityConfig,
    keep_ratio: float,
    threshold: float,
) -> Selection:
    """Score and select the kept rows of every segment. x: [B, T, d] normed hidden states."""
    _B, T, _ = x.shape
    b = config.block_size
    rows, cu, blocks = [], [0], []
    for seg in segments:
        if config.selection == "ratio" and keep_ratio >= 1.0:
            nb = -(-seg.length // b)
            kept = torch.arange(nb, device=x.device)  # everything kept: no need to score
        else:
            scores = scorer(parts, x[seg.row, seg.start : seg.end].detach(), b)  # [nb]
            if config.selection == "ratio":
                kept = select_by_ratio(scores, keep_ratio, config.sink_blocks, config.local_blocks)
            else:
                kept = select_by_threshold(scores, threshold, config.sink_blocks, config.local_blocks)
        kept = kept.to(x.device)
        tokens = blocks_to_tokens(kept, b, seg.length) + (seg.row * T + seg.start)  # [n_s]
        rows.append(tokens)
        cu.append(cu[-1] + tokens.numel())
        blocks.append(kept.tolist())
    row_ids = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long, device=x.device)  # [N]
    total = sum(s.length for s in segments)
    return Selection(row_ids, cu, blocks, (row_ids.numel() / total) if total else 1.0)


def sparse_layer_forward(
    parts: LayerParts,
    hidden: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    position_ids: torch.Tensor | None,
    state: SparsityState,
    scorer: BlockScorer,
    training: bool,
) -> torch.Tensor:
    """One decoder layer with token elimination.

    Args:
        hidden: [B, T, d] residual stream entering the layer.
        position_embeddings: (cos, sin), each [B or 1, T, D], as the model computed them for all positions
            (any RoPE scaling is already inside).
        position_ids: [B or 1, T] original positions (documents restart at 0 when packed), or None.

    Returns:
        [B, T, d] residual stream leaving the layer.
    """
    cfg = state.config
    B, T, d = hidden.shape
    attn = parts.attn
    x = parts.input_norm(hidden)  # [B, T, d]

    segments = state.segments(B, T, position_ids)
    # Under activation checkpointing the layer runs again in backward on the same input: reuse the selection,
    # so the recomputed graph matches the first one exactly and scoring is not paid twice.
    key = (hidden.data_ptr(), tuple(hidden.shape), hidden._version)
    sel = state.cached_selection(parts.index, key)
    if sel is None and cfg.shared_selection:
        sel = state.first_selection()
        if sel is not None:
            state.store_selection(parts.index, key, sel)
    if sel is None:
        sel = select_rows(
            parts,
            x,
            segments,
            scorer,
            cfg,
            state.keep_ratio.get(parts.index, 1.0),
            state.threshold.get(parts.index, 0.0),
        )
        state.store_selection(parts.index, key, sel)
    rows = sel.rows  # [N]
    N = rows.numel()

    xk = x.reshape(B * T, d)[rows]  # [N, d] selective load (a gather in the reference path)
    q = attn.q_proj(xk).view(N, attn.num_heads, attn.head_dim)  # [N, H, D]
    k = attn.k_proj(xk).view(N, attn.num_kv_heads, attn.head_dim)  # [N, H_kv, D]
    v = attn.v_proj(xk).view(N, attn.num_kv_heads, attn.head_dim)  # [N, H_kv, D]
    if attn.q_norm is not None:
        q = attn.q_norm(q)
    if attn.k_norm is not None:
        k = attn.k_norm(k)
    cos, sin = position_embeddings
    cos = cos.expand(B, T, -1).reshape(B * T, -1)[rows]  # [N, D] cos at the kept tokens' original positions
    sin = sin.expand(B, T, -1).reshape(B * T, -1)[rows]  # [N, D]
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    positions = None
    if attn.sliding_window is not None:
        pos = position_ids if position_ids is not None else torch.arange(T, device=hidden.device)[None]
        positions = pos.expand(B, T).reshape(B * T)[rows]  # [N]
    o = varlen_causal_attention(
        q,
        k,
        v,
        sel.cu_seqlens,
        attn.scaling,
        positions=positions,
        sliding_window=attn.sliding_window,
        dropout_p=attn.dropout if training else 0.0,
        backend=cfg.backend,
    )  # [N, H, D]
    o = attn.o_proj(o.reshape(N, attn.num_heads * attn.head_dim))  # [N, d]
    h = add_rows(hidden.reshape(B * T, d), rows, o)  # [B*T, d] permutation-free residual update

    if cfg.mlp == "tokens":
        y = parts.mlp(parts.post_norm(h[rows]))  # [N, d] only kept rows run the MLP
        h = add_rows(h, rows, y)
    elif cfg.mlp == "channels":
        if parts.mlp_weights is None:
            raise ValueError(
                "mlp='channels' needs a plain SwiGLU MLP without adapters; drop LoRA from gate/up/down_proj "
                "or use mlp='dense'."
            )
        gate, up, down = parts.mlp_weights
        h = h + channel_sparse_mlp(parts.post_norm(h), gate, up, down, cfg.mlp_keep)
    else:
        h = h + parts.mlp(parts.post_norm(h))  # [B*T, d]
    return h.view(B, T, d)
