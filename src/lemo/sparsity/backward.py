"""Backward elimination (`SparsityConfig(elimination="backward")`): every token runs every layer exactly as in the
dense model, and a sparse layer spends its *backward* on the kept rows only.

For a sparse layer with input h and update u(h) (attention, then MLP):

    forward   out = h + u(h)                      all rows, no graph kept: the loss equals dense's
    select    kept rows K: after the forward (it can read the layer's own attention, lemo.sparsity.supervision),
              or with scorer="gradient" at the start of the layer's backward, from dL/d out
    backward  d out / d h = I + d u[K] / d h      u of eliminated rows is treated as a constant

The kept rows' update is recomputed in backward from the stored layer input (as activation checkpointing does):
their queries against the keys and values of *all* rows, so an eliminated row still receives gradient through
the residual and through its K and V as kept queries see them. What is saved between forward and backward is
the layer input alone, and the recompute and backward cost scale with the kept share.

scorer="gradient": the rows whose output gradient is large are those whose update moves the loss most (for a
retrieval answer, the gradient reaches the evidence rows from the labelled positions through the attention of the
layers above). A block's score is the largest per-row L2 norm of grad_out among its rows (`GRADIENT_REDUCE`);
the same rules as every mode then choose (`lemo.sparsity.selection.select_blocks`: sink/local, evidence and
labelled blocks first, `random_fraction` of random blocks). Nothing beyond h is saved for it: the priority tiers
are [nb] bools made at forward time (the label and evidence masks are gone by backward). The selection is stored
in the backward pass, so `lemo.stats` and `SparsityState.last` show it after `loss.backward()`, not after the
forward (a hook that reads selections when the forward ends sees none of this step's).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import torch

from lemo.memory import tiled_rows_many
from lemo.sparsity.parts import LayerParts
from lemo.sparsity.query_rows import QueryRows, locate, query_rows_update
from lemo.sparsity.scoring import BlockScorer
from lemo.sparsity.segments import Segment
from lemo.sparsity.selection import (
    PROFILE_RANGE,
    fitting,
    full_rows,
    priority_tiers,
    segment_queries,
    select_blocks,
)
from lemo.sparsity.state import Selection, SparsityState
from lemo.sparsity.supervision import MAX_QUERIES, attention_received, farthest

# How a block's rows' gradient norms make its score for scorer="gradient": "max" (its largest row: a fact is a few
# tokens of a 64-token block) or "sum" (the gradient mass the block's updates carry). Measured on the suite's rows
# (benchmarks/results/suite_bias_gradient_cpu.csv): a tie on prompt/completion rows, and on plain text "sum" keeps
# filler over evidence (every row's gradient carries its own next-token loss, which the sum adds up 64 times).
GRADIENT_REDUCE: Literal["max", "sum"] = "max"


@dataclass
class _Forward:
    """What the dense forward of one layer leaves for the selection: all rows' normed input, q and k."""

    x: torch.Tensor  # [Na, d] normed input of every segment row
    q: torch.Tensor  # [Na, H, D] queries, RoPE applied
    k: torch.Tensor  # [Na, H_kv, D] keys, RoPE applied


def _dense_rows(
    parts: LayerParts,
    h: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    full: Selection,
    backend: str,
    tile: int = 0,
    kernel: str = "auto",
) -> tuple[torch.Tensor, _Forward]:
    """The layer's output rows for every segment row, as the dense layer computes them (called without grad).

    Args:
        h: [Na, d] the segment rows of the layer input; cos, sin: [Na, D] their RoPE tables.
        tile: with `tile_attention`, the row-wise parts run `tile` rows at a time (no graph here, so this only
            bounds their intermediates; the MLP is tiled by its own patched forward when tile_tokens is set).
    Returns:
        ([Na, d] output rows, what the selection reads).
    """

    def pre(hr: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, ...]:
        xr = parts.input_norm(hr)  # [t, d]
        return (xr, *parts.attn.qkv(xr, c, s))  # [t, d], [t, H, D], [t, H_kv, D] x2

    def post(hr: torch.Tensor, ar: torch.Tensor) -> tuple[torch.Tensor]:
        # The same two rounding steps as the dense residual adds.
        mid = hr + parts.attn.o_proj(ar).to(hr.dtype)  # [t, d]
        return (mid + parts.mlp(parts.post_norm(mid)).to(hr.dtype),)  # [t, d]

    x, q, k, v = tiled_rows_many(pre, (h, cos, sin), tile)
    a = parts.attn.core(q, k, v, full.cu_seqlens, backend=backend, kernel=kernel)  # [Na, H*D]
    (out,) = tiled_rows_many(post, (h, a), tile)  # [Na, d]
    return out, _Forward(x, q, k)


@dataclass
class _Layer:
    """One sparse layer's forward, as much of it as its backward needs: nothing of size [Na, d] but h itself,
    which `_KeptBackward` saves."""

    parts: LayerParts
    state: SparsityState
    full: Selection  # every segment row
    segments: list[Segment]
    tiers: list[list[torch.Tensor]]  # per segment, [nb] bool priority tiers
    cos: torch.Tensor  # [Na, D]
    sin: torch.Tensor  # [Na, D]
    batch: int  # B
    length: int  # T
    params: tuple[torch.Tensor, ...]  # the layer's trainable parameters (the adapters)
    rows: QueryRows | None = None  # chosen after the forward; None: chosen in backward (scorer="gradient")

    def locate(self, sel: Selection) -> QueryRows:
        """Where the rows of `sel` sit among the segment rows and inside their segments."""
        return locate(self.full, sel, self.length * self.batch)

    def choose(self, grad_out: torch.Tensor) -> QueryRows:
        """The kept rows by the output gradient grad_out [B*T, d] (scorer="gradient"), stored for `lemo.stats`."""
        cfg, index = self.state.config, self.parts.index
        with torch.no_grad(), torch.profiler.record_function(PROFILE_RANGE):
            norms = grad_out[self.full.rows].float().norm(dim=-1)  # [Na] per-row dL/d out
            scores = gradient_block_scores(norms, self.full.cu_seqlens, cfg.block_size, GRADIENT_REDUCE)
            sel = select_blocks(
                self.segments,
                self.length,
                cfg,
                *self.state.keep(index),
                lambda s, _seg: scores[s],
                self.tiers,
                grad_out.device,
            )
        self.state.store_selection(index, ("backward", index), sel)
        return self.locate(sel)

    def update(self, h: torch.Tensor, rows: QueryRows) -> torch.Tensor:
        """u[K] [Nk, d] of the layer input h [B*T, d], with the graph backward needs (recomputed in backward)."""
        hr = h[self.full.rows]  # [Na, d]
        backend = self.state.config.backend
        return query_rows_update(
            self.parts, hr, self.cos, self.sin, self.full, rows, self.tile, backend=backend
        )

    @property
    def tile(self) -> int:
        """Rows per tile of the row-wise parts (`tile_attention`), 0: untiled."""
        cfg = self.state.config
        return cfg.tile_tokens if cfg.tile_attention else 0


class _KeptBackward(torch.autograd.Function):
    """Output = the dense output computed outside the graph; backward = identity + the kept rows' recomputed
    update. Parameters come in as inputs so their gradients flow the usual way (hooks, autograd.grad)."""

    @staticmethod
    def forward(ctx, h, out, layer, *params):
        ctx.layer = layer
        offloader = layer.state.offloader
        # offload="cpu": h waits in pinned host memory, prefetched back one layer ahead of this backward.
        ctx.handle = offloader.store(h) if offloader is not None else None
        if ctx.handle is None:
            ctx.save_for_backward(h)
        return out.clone()

    @staticmethod
    def backward(ctx, grad_out):
        layer: _Layer = ctx.layer
        h = ctx.saved_tensors[0] if ctx.handle is None else layer.state.offloader.load(ctx.handle)
        rows = layer.rows if layer.rows is not None else layer.choose(grad_out)
        with torch.enable_grad():
            hd = h.detach().requires_grad_(True)
            u = layer.update(hd, rows)  # [Nk, d]
            grads = torch.autograd.grad(
                u, [hd, *layer.params], grad_out[rows.sel.rows], allow_unused=True
            )  # d u[K] / d (h, params)
        grad_h = grad_out if grads[0] is None else grad_out + grads[0]
        return (grad_h, None, None, *grads[1:])


def gradient_block_scores(
    norms: torch.Tensor, cu_seqlens: list[int], block_size: int, reduce: Literal["max", "sum"] = "max"
) -> list[torch.Tensor]:
    """Per segment, [nb] block scores from the per-row gradient norms [Na] of all segments (one reduction for
    all of them: a row's block is its index inside its segment // block_size, after the earlier segments' blocks).
    """
    lengths = [c1 - c0 for c0, c1 in pairwise(cu_seqlens)]
    nbs = [-(-n // block_size) for n in lengths]
    device = norms.device
    first_block = torch.tensor([sum(nbs[:s]) for s in range(len(nbs))], device=device)  # [S]
    seg_start = torch.tensor(cu_seqlens[:-1], device=device)  # [S]
    seg_of = torch.repeat_interleave(
        torch.arange(len(lengths), device=device),
        torch.tensor(lengths, device=device),
        output_size=norms.numel(),
    )  # [Na]
    block = (torch.arange(norms.numel(), device=device) - seg_start[seg_of]) // block_size + first_block[
        seg_of
    ]
    scores = torch.zeros(sum(nbs), dtype=norms.dtype, device=device)  # [total blocks]; norms are >= 0
    scores.scatter_reduce_(0, block, norms, reduce="sum" if reduce == "sum" else "amax")
    return list(scores.split(nbs))


def _select(
    parts: LayerParts,
    fwd: _Forward,
    layer: _Layer,
    scorer: BlockScorer,
    query_mask: torch.Tensor | None,
    far: bool = False,
) -> Selection:
    """Kept rows of every segment, chosen from this layer's forward; `far`: plain text's query candidates."""
    state, cu = layer.state, layer.full.cu_seqlens
    queries: list[torch.Tensor | None] = []  # per segment, filled at the first score read (one host copy)

    def score(s: int, seg: Segment) -> torch.Tensor:
        if state.config.scorer == "supervision" and not queries:
            queries.extend(segment_queries(query_mask, layer.segments, fwd.x.device, far))
        index = queries[s] if queries else None
        return _scores(parts, fwd, state, scorer, seg, cu[s], cu[s + 1], index, far)

    keep, thr = state.keep(parts.index)
    return select_blocks(
        layer.segments, layer.length, state.config, keep, thr, score, layer.tiers, fwd.x.device
    )


def _scores(
    parts: LayerParts,
    fwd: _Forward,
    state: SparsityState,
    scorer: BlockScorer,
    seg: Segment,
    a0: int,
    a1: int,
    index: torch.Tensor | None,
    far: bool = False,
) -> torch.Tensor:
    """[nb] block scores of one segment (rows a0:a1 of the forward) for the configured scorer; `index` [nq] the
    supervision scorer's query rows in the segment (`segment_queries`), None: nothing supervised."""
    cfg = state.config
    if cfg.scorer != "supervision":
        return scorer(parts, fwd.x[a0:a1], cfg.block_size)
    if index is None:
        nb = -(-seg.length // cfg.block_size)
        return torch.zeros(nb, device=fwd.x.device)  # nothing supervised: the random share decides
    q = fwd.q[a0:a1][index]  # [nq, H, D]
    if far:  # plain text: of the candidates, the rows attending farthest back
        pick = farthest(q, fwd.k[a0:a1], index, parts.attn.scaling, MAX_QUERIES)  # [<= MAX_QUERIES]
        q, index = q[pick], index[pick]
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
    # The label and evidence masks are one forward's: the tiers are taken now, also for a backward-time choice.
    tiers = priority_tiers(
        segments,
        cfg,
        fitting(state.evidence_mask, B, T),
        fitting(state.label_mask, B, T),
        fitting(state.copy_mask, B, T),
    )
    layer = _Layer(parts, state, full, segments, tiers, cos, sin, B, T, params)
    with torch.no_grad():
        out_rows, fwd = _dense_rows(
            parts, flat[full.rows], cos, sin, full, cfg.backend, layer.tile, cfg.attention_kernel
        )
        out = flat.index_copy(0, full.rows, out_rows)  # [B*T, d] rows outside every segment pass through
        if cfg.scorer != "gradient":
            with torch.profiler.record_function(PROFILE_RANGE):
                sel = _select(parts, fwd, layer, scorer, fitting(state.query_mask, B, T), state.query_far)
    del fwd  # the selection's inputs; the backward keeps only h
    if cfg.scorer != "gradient":
        state.store_selection(parts.index, ("backward", parts.index), sel)
        layer.rows = layer.locate(sel)
    if not (flat.requires_grad or any(p.requires_grad for p in params)):
        return out.view(B, T, d)
    return _KeptBackward.apply(flat, out, layer, *params).view(B, T, d)
