"""Backward elimination (`SparsityConfig(elimination="backward")`): every token runs every layer exactly as in the
dense model, and a sparse layer spends its *backward* on the kept rows only.

For a sparse layer with input h and update u(h) (attention, then MLP):

    forward   out = h + u(h)                      all rows, no graph kept: the loss equals dense's
    select    kept rows, chosen after the forward (it can read the layer's own attention, lemo.sparsity.supervision)
    backward  d out / d h = I + d u[K] / d h      u of eliminated rows is treated as a constant

The kept rows' update is recomputed in backward from the stored layer input (as activation checkpointing does):
their queries against the keys and values of *all* rows, so an eliminated row still receives gradient through
the residual and through its K and V as kept queries see them. What is saved between forward and backward is
the layer input alone, and the recompute and backward cost scale with the kept share.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lemo.ops import (
    apply_rope,
    blocks_to_tokens,
    blocks_with_any,
    query_rows_attention,
    select_by_ratio,
    select_by_threshold,
)
from lemo.sparsity.parts import LayerParts
from lemo.sparsity.scoring import BlockScorer
from lemo.sparsity.selection import full_rows
from lemo.sparsity.state import Selection, SparsityState
from lemo.sparsity.supervision import MAX_QUERIES, attention_received, spread


@dataclass
class _Forward:
    """What the dense forward of one layer leaves for the selection: all rows' normed input, q and k."""

    x: torch.Tensor  # [Na, d] normed input of every segment row
    q: torch.Tensor  # [Na, H, D] queries, RoPE applied
    k: torch.Tensor  # [Na, H_kv, D] keys, RoPE applied


def _dense_rows(
    parts: LayerParts, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, full: Selection, backend: str
) -> tuple[torch.Tensor, _Forward]:
    """The layer's output rows for every segment row, as the dense layer computes them (called without grad).

    Args:
        h: [Na, d] the segment rows of the layer input; cos, sin: [Na, D] their RoPE tables.
    Returns:
        ([Na, d] output rows, what the selection reads).
    """
    x = parts.input_norm(h)  # [Na, d]
    q, k, v = parts.attn.qkv(x, cos, sin)  # [Na, H, D], [Na, H_kv, D] x2
    a = parts.attn.core(q, k, v, full.cu_seqlens, backend=backend)  # [Na, H*D]
    mid = h + parts.attn.o_proj(a).to(
        h.dtype
    )  # [Na, d] the same two rounding steps as the dense residual adds
    out = mid + parts.mlp(parts.post_norm(mid)).to(h.dtype)  # [Na, d]
    return out, _Forward(x, q, k)


def _kept_update(
    parts: LayerParts,
    h: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    full: Selection,
    kept: torch.Tensor,
    kept_index: torch.Tensor,
    cu_kept: list[int],
) -> torch.Tensor:
    """The kept rows' update u[K] [Nk, d], with the graph backward needs (recomputed in backward).

    Args:
        h: [Na, d] segment rows of the layer input; kept: [Nk] positions of the kept rows among them;
        kept_index: [Nk] each kept row's index inside its segment; cu_kept: S+1 offsets of the kept rows.
    """
    attn = parts.attn
    x = parts.input_norm(h)  # [Na, d] every row: its K and V stay differentiable
    n = h.shape[0]
    k = attn.k_proj(x).view(n, attn.num_kv_heads, attn.head_dim)  # [Na, H_kv, D]
    if attn.k_norm is not None:
        k = attn.k_norm(k)
    k = apply_rope(k, cos, sin)
    v = attn.v_proj(x).view(n, attn.num_kv_heads, attn.head_dim)  # [Na, H_kv, D]
    xq = x[kept]  # [Nk, d]
    q = attn.q_proj(xq).view(xq.shape[0], attn.num_heads, attn.head_dim)  # [Nk, H, D]
    if attn.q_norm is not None:
        q = attn.q_norm(q)
    q = apply_rope(q, cos[kept], sin[kept])
    a = query_rows_attention(
        q, k, v, kept_index, cu_kept, full.cu_seqlens, attn.scaling, sliding_window=attn.sliding_window
    )  # [Nk, H, D]
    o = attn.o_proj(a.reshape(q.shape[0], -1))  # [Nk, d]
    mid = h[kept] + o.to(h.dtype)  # [Nk, d]
    return o + parts.mlp(parts.post_norm(mid))  # [Nk, d]


class _KeptBackward(torch.autograd.Function):
    """Output = the dense output computed outside the graph; backward = identity + the kept rows' recomputed
    update. Parameters come in as inputs so their gradients flow the usual way (hooks, autograd.grad)."""

    @staticmethod
    def forward(ctx, h, out, update_fn, rows, *params):
        ctx.update_fn = update_fn
        ctx.save_for_backward(h, rows)
        ctx.n_params = len(params)
        return out.clone()

    @staticmethod
    def backward(ctx, grad_out):
        h, rows = ctx.saved_tensors
        params = [p for p in ctx.update_fn.params]
        with torch.enable_grad():
            hd = h.detach().requires_grad_(True)
            u = ctx.update_fn(hd)  # [Nk, d]
            grads = torch.autograd.grad(
                u, [hd, *params], grad_out[rows], allow_unused=True
            )  # d u[K] / d (h, params)
        grad_h = grad_out if grads[0] is None else grad_out + grads[0]
        return (grad_h, None, None, None, *grads[1:])


class _Update:
    """The recompute closure of one layer's kept rows, with the parameters it differentiates."""

    def __init__(self, fn, params: tuple[torch.Tensor, ...]) -> None:
        self.fn = fn
        self.params = params

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return self.fn(h)


def _select(
    parts: LayerParts,
    fwd: _Forward,
    full: Selection,
    state: SparsityState,
    scorer: BlockScorer,
    segments: list,
    T: int,
) -> Selection:
    """Kept rows of every segment, chosen from this layer's forward."""
    cfg = state.config
    b = cfg.block_size
    keep = state.keep_ratio.get(parts.index, 1.0)
    rows, cu, blocks = [], [0], []
    for s, seg in enumerate(segments):
        a0, a1 = full.cu_seqlens[s], full.cu_seqlens[s + 1]
        nb = -(-seg.length // b)
        priority = _priority(state, seg, b)
        scores = _scores(parts, fwd, state, scorer, seg, a0, a1, nb)
        if cfg.selection == "ratio" and keep >= 1.0:
            kept = torch.arange(nb, device=fwd.x.device)
        elif cfg.selection == "ratio":
            kept = select_by_ratio(
                scores,
                keep,
                cfg.sink_blocks,
                cfg.local_blocks,
                priority=priority,
                random_fraction=cfg.random_fraction,
            )
        else:
            thr = state.threshold.get(parts.index, 0.0)
            kept = select_by_threshold(scores, thr, cfg.sink_blocks, cfg.local_blocks, priority=priority)
        kept = kept.to(fwd.x.device)
        rows.append(blocks_to_tokens(kept, b, seg.length) + (seg.row * T + seg.start))  # [n_s]
        cu.append(cu[-1] + rows[-1].numel())
        blocks.append(kept.tolist())
    row_ids = torch.cat(rows)  # [N]
    return Selection(row_ids, cu, blocks, row_ids.numel() / max(full.rows.numel(), 1))


def _priority(state: SparsityState, seg, b: int) -> list[torch.Tensor]:
    """[nb] bool tiers kept first, in order: blocks holding known evidence, then labelled blocks."""
    tiers = []
    for mask in (state.evidence_mask, state.label_mask):
        if mask is not None and mask.dim() == 2 and seg.row < mask.shape[0] and seg.end <= mask.shape[1]:
            tiers.append(blocks_with_any(mask[seg.row, seg.start : seg.end], b))
    return tiers


def _scores(
    parts: LayerParts,
    fwd: _Forward,
    state: SparsityState,
    scorer: BlockScorer,
    seg,
    a0: int,
    a1: int,
    nb: int,
) -> torch.Tensor:
    """[nb] block scores of one segment for the configured scorer (zeros when random blocks never read them)."""
    cfg = state.config
    if cfg.selection == "ratio" and cfg.random_fraction >= 1.0:
        return torch.zeros(nb, device=fwd.x.device)
    if cfg.scorer != "supervision":
        return scorer(parts, fwd.x[a0:a1], cfg.block_size)
    mask = state.query_mask
    if mask is None or mask.dim() != 2 or seg.row >= mask.shape[0] or seg.end > mask.shape[1]:
        return torch.zeros(nb, device=fwd.x.device)  # nothing supervised: the random share decides
    index = spread(mask[seg.row, seg.start : seg.end].nonzero().flatten(), MAX_QUERIES)  # [nq]
    q = fwd.q[a0:a1][index]  # [nq, H, D]
    return attention_received(q, fwd.k[a0:a1], index, parts.attn.scaling, cfg.block_size)


def backward_layer_forward(
    parts: LayerParts,
    hidden: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    position_ids: torch.Tensor | None,
    state: SparsityState,
    scorer: BlockScorer,
    params: tuple[torch.Tensor, ...],
) -> torch.Tensor:
    """One decoder layer under backward elimination (see the module docstring).

    Args:
        hidden: [B, T, d] residual stream entering the layer.
        position_embeddings: (cos, sin), each [B or 1, T, D].
        params: the layer's trainable parameters (the adapters), whose gradients the kept rows' backward gives.
    Returns:
        [B, T, d] the layer's output, equal to the dense layer's.
    """
    cfg = state.config
    B, T, d = hidden.shape
    full = full_rows(state, B, T, position_ids, hidden.device)
    segments = state.segments(B, T, position_ids)
    cos, sin = position_embeddings
    cos = cos.expand(B, T, -1).reshape(B * T, -1)[full.rows]  # [Na, D]
    sin = sin.expand(B, T, -1).reshape(B * T, -1)[full.rows]  # [Na, D]
    flat = hidden.reshape(B * T, d)  # [B*T, d]
    with torch.no_grad():
        out_rows, fwd = _dense_rows(parts, flat[full.rows], cos, sin, full, cfg.backend)
        sel = _select(parts, fwd, full, state, scorer, segments, T)
        out = flat.index_copy(0, full.rows, out_rows)  # [B*T, d] rows outside every segment pass through
    state.store_selection(parts.index, ("backward", parts.index), sel)
    # Positions of the kept rows among the segment rows (full.rows is every segment row in order).
    where = torch.full((B * T,), -1, dtype=torch.long, device=hidden.device)
    where[full.rows] = torch.arange(full.rows.numel(), device=hidden.device)
    kept = where[sel.rows]  # [Nk]
    seg_start = torch.tensor(full.cu_seqlens[:-1], device=hidden.device)
    seg_of = torch.repeat_interleave(
        torch.arange(len(segments), device=hidden.device),
        torch.tensor([c1 - c0 for c0, c1 in zip(sel.cu_seqlens, sel.cu_seqlens[1:])], device=hidden.device),
    )  # [Nk]
    kept_index = kept - seg_start[seg_of]  # [Nk] index inside the segment

    def update(h: torch.Tensor) -> torch.Tensor:
        hr = h[full.rows]  # [Na, d]
        return _kept_update(parts, hr, cos, sin, full, kept, kept_index, sel.cu_seqlens)

    if not (flat.requires_grad or any(p.requires_grad for p in params)):
        return out.view(B, T, d)
    result = _KeptBackward.apply(flat, out, _Update(update, params), sel.rows, *params)
    return result.view(B, T, d)
