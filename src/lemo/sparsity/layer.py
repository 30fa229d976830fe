"""The forward of one sparse decoder layer (docs/design.md section 1), built from ops.

K = kept rows, chosen by lemo.sparsity.selection (no gradient)
q, k, v = proj(input_norm(h[K])); RoPE at original positions; causal attention among K only
h[K] += o_proj(attn)                    rows outside K skip the attention sublayer through the residual
MLP over all rows ("dense"), over K only ("tokens"), or dense with a channel-sparse backward ("channels")

The norm runs on the gathered rows h[K] (it is row-wise, so this equals gathering the normed rows): then nothing
in the layer's graph holds a full-length tensor, which is what lets the update go into h in place and lets
activation checkpointing store only h[K] (sparsity-aware checkpointing) instead of the whole layer input.
"""

from __future__ import annotations

from functools import partial

import torch
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from lemo.config import SparsityConfig
from lemo.memory import HostOffloader, offloaded_checkpoint, tiled_rows_many
from lemo.ops import add_rows, channel_sparse_mlp
from lemo.ops.sparse_attention import add_rows_
from lemo.sparsity.parts import LayerParts
from lemo.sparsity.scoring import BlockScorer
from lemo.sparsity.selection import choose_rows, full_rows
from lemo.sparsity.state import Selection, SparsityState


def _attention_update(
    parts: LayerParts,
    config: SparsityConfig,
    sel: Selection,
    training: bool,
    with_mlp: bool,
    hk: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    positions: torch.Tensor | None,
) -> tuple[torch.Tensor, ...]:
    """Everything the kept rows compute, from the kept rows alone (the unit that checkpointing recomputes).

    Args:
        hk: [N, d] kept rows of the residual stream entering the layer.
        cos, sin: [B*T, D] rotary tables at every position (shared by all layers, so saving them costs nothing).
        positions: [N] original positions of the kept rows, only for sliding-window attention.

    Returns:
        (o,) with o [N, d] the attention update, or (o, y) with y [N, d] the MLP update of hk + o.
    """
    rows = sel.rows
    if config.tile_attention and with_mlp and hk.shape[0] > config.tile_tokens:
        return _tiled_update(parts, config, sel, training, hk, cos[rows], sin[rows], positions)
    xk = parts.input_norm(hk)  # [N, d] selective load: only kept rows are normed and projected
    o = parts.attn.attend(
        xk,
        cos[rows],  # [N, D] RoPE at the kept tokens' original positions
        sin[rows],
        sel.cu_seqlens,
        positions=positions,
        dropout_p=parts.attn.dropout if training else 0.0,
        backend=config.backend,
        kernel=config.attention_kernel,
    )  # [N, d]
    if not with_mlp:
        return (o,)
    # hk + o rounds exactly as the residual add does, so the result matches adding o first, then y.
    y = parts.mlp(parts.post_norm(hk + o.to(hk.dtype)))  # [N, d] only kept rows run the MLP
    return o, y


def _tiled_update(
    parts: LayerParts,
    config: SparsityConfig,
    sel: Selection,
    training: bool,
    hk: torch.Tensor,
    cos_k: torch.Tensor,
    sin_k: torch.Tensor,
    positions: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`_attention_update` with everything but the attention core run over row tiles (`tile_attention`).

    Norms, projections, RoPE, the MLP and the residual adds are row-wise: tiled, each keeps only its inputs for
    backward, so at long T a layer holds q, k, v and the attention output at full length and one tile of the rest
    (the norms' fp32 copies, the MLP intermediates). The attention core mixes rows and runs once over all of them.
    """

    def pre(h: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return parts.attn.qkv(parts.input_norm(h), c, s)  # [t, H, D], [t, H_kv, D], [t, H_kv, D]

    def post(h: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        o = parts.attn.o_proj(a)  # [t, d]
        return o, parts.mlp(parts.post_norm(h + o.to(h.dtype)))  # [t, d] each

    tile = config.tile_tokens
    q, k, v = tiled_rows_many(pre, (hk, cos_k, sin_k), tile)
    dropout = parts.attn.dropout if training else 0.0
    a = parts.attn.core(
        q,
        k,
        v,
        sel.cu_seqlens,
        positions=positions,
        dropout_p=dropout,
        backend=config.backend,
        kernel=config.attention_kernel,
    )  # [N, H*D]
    o, y = tiled_rows_many(post, (hk, a), tile)
    return o, y


def _mlp_over_all_rows(parts: LayerParts, cfg: SparsityConfig, h: torch.Tensor) -> torch.Tensor:
    """h [B*T, d] plus the MLP of every row: dense, or with a channel-sparse backward (mlp="dense"/"channels")."""
    if cfg.mlp != "channels":
        return h + parts.mlp(parts.post_norm(h))  # [B*T, d]
    if parts.mlp_weights is None:
        raise ValueError(
            "mlp='channels' needs a plain SwiGLU MLP without adapters; drop LoRA from gate/up/down_proj "
            "or use mlp='dense'."
        )
    gate, up, down = parts.mlp_weights
    return h + channel_sparse_mlp(parts.post_norm(h), gate, up, down, cfg.mlp_keep)


def sparse_layer_forward(
    parts: LayerParts,
    hidden: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    position_ids: torch.Tensor | None,
    state: SparsityState,
    scorer: BlockScorer,
    training: bool,
    checkpoint: bool = False,
    inplace: bool = False,
    offloader: HostOffloader | None = None,
    dense: bool = False,
) -> torch.Tensor:
    """One decoder layer with token elimination.

    Args:
        hidden: [B, T, d] residual stream entering the layer.
        position_embeddings: (cos, sin), each [B or 1, T, D], as the model computed them for all positions
            (any RoPE scaling is already inside).
        position_ids: [B or 1, T] original positions (documents restart at 0 when packed), or None.
        checkpoint: recompute in backward instead of storing activations. With mlp="tokens" only the kept rows
            [N, d] are stored (the eliminated rows are never read by the layer); other modes store the input.
        inplace: add the updates into `hidden` itself (no [B*T, d] copy). Only when no one else keeps `hidden`:
            autograd's version counter catches a graph that saved it, but not an observer such as a hook.
        offloader: with `checkpoint`, keep the stored input (the kept rows, or the layer input) in host memory.
        dense: keep every row (a dense layer run by this forward so it tiles and offloads like the sparse ones).

    Returns:
        [B, T, d] residual stream leaving the layer (a view of `hidden` when `inplace`).
    """
    cfg = state.config
    B, T, d = hidden.shape
    sel = (
        full_rows(state, B, T, position_ids, hidden.device)
        if dense
        else choose_rows(parts, hidden, position_ids, state, scorer, position_embeddings)
    )
    rows = sel.rows  # [N]
    cos, sin = position_embeddings
    cos = cos.expand(B, T, -1).reshape(B * T, -1)  # [B*T, D]
    sin = sin.expand(B, T, -1).reshape(B * T, -1)  # [B*T, D]
    positions = None
    if parts.attn.sliding_window is not None:
        pos = position_ids if position_ids is not None else torch.arange(T, device=hidden.device)[None]
        positions = pos.expand(B, T).reshape(B * T)[rows]  # [N]
    tokens_mlp = cfg.mlp == "tokens" or dense  # a dense layer's MLP runs on its rows: every row
    # Under autograd a leaf cannot be updated in place; the caller's `inplace` covers who else observes hidden.
    inplace = inplace and tokens_mlp and not (hidden.is_leaf and hidden.requires_grad)
    flat = hidden.reshape(B * T, d)  # [B*T, d]
    add = partial(add_rows_, backend=cfg.backend) if inplace else partial(add_rows, backend=cfg.backend)

    def body(h_in: torch.Tensor) -> torch.Tensor:
        h2 = h_in.reshape(B * T, d)  # [B*T, d]
        update = partial(_attention_update, parts, cfg, sel, training, tokens_mlp)
        if tokens_mlp and checkpoint and offloader is not None:
            outs = offloaded_checkpoint(update, offloader, h2[rows], cos, sin, positions)
        elif tokens_mlp and checkpoint:
            outs = torch_checkpoint(update, h2[rows], cos, sin, positions, use_reentrant=False)
        else:
            outs = update(h2[rows], cos, sin, positions)  # h2[rows]: [N, d] gathered kept rows
        for u in outs:  # o, then y: the same two rounding steps as the dense layer's two residual adds
            h2 = add(h2, rows, u)
        return _mlp_over_all_rows(parts, cfg, h2) if cfg.mlp == "channels" or not tokens_mlp else h2

    if checkpoint and not tokens_mlp:
        # The MLP reads every row, so the layer input has to be stored: checkpoint the whole layer, as HF would.
        if offloader is not None:
            h = offloaded_checkpoint(body, offloader, hidden)
        else:
            h = torch_checkpoint(body, hidden, use_reentrant=False)
    else:
        h = body(flat)
    return h.view(B, T, d)
