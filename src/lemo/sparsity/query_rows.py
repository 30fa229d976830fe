"""A decoder layer's update for some of its rows (the query rows) against the keys and values of every row.

Two paths run it:
- backward elimination's recompute (lemo.sparsity.backward): the kept rows' update, whose backward is the
  layer's;
- the trimmed last layer (lemo.sparsity.trimmed): only the positions the loss reads need the last layer's
  output, and every other row contributes its key and value alone.

q, o and the MLP run over the query rows; the input norm, k and v over every row, so the query rows see exactly
the keys and values the dense layer would give them.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch

from lemo.memory import tiled_rows_many
from lemo.ops import apply_rope, query_rows_attention
from lemo.sparsity.parts import LayerParts
from lemo.sparsity.state import Selection


@dataclass
class QueryRows:
    """Some rows of a layer and where they sit among its segment rows and inside their segments."""

    sel: Selection
    kept: torch.Tensor  # [Nk] positions of the rows among the segment rows (full.rows)
    index: torch.Tensor  # [Nk] each row's index inside its segment


def locate(full: Selection, sel: Selection, total_rows: int) -> QueryRows:
    """Where the rows of `sel` sit among the segment rows `full` of a [B*T] = `total_rows` sequence."""
    n = full.rows.numel()
    device = full.rows.device
    where = torch.full((total_rows,), -1, dtype=torch.long, device=device)  # [B*T]
    where[full.rows] = torch.arange(n, device=device)
    kept = where[sel.rows]  # [Nk]
    seg_start = torch.tensor(full.cu_seqlens[:-1], device=device)  # [S]
    counts = [c1 - c0 for c0, c1 in pairwise(sel.cu_seqlens)]
    seg_of = torch.repeat_interleave(
        torch.arange(len(counts), device=device),
        torch.tensor(counts, device=device),
        output_size=kept.numel(),
    )  # [Nk]
    return QueryRows(sel, kept, kept - seg_start[seg_of])


def query_rows_update(
    parts: LayerParts,
    h: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    full: Selection,
    rows: QueryRows,
    tile: int = 0,
    split: bool = False,
    backend: str | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The query rows' update u = o + y [Nk, d], with the graph backward needs; with `split`, (o, y) apart, so the
    caller adds them to the residual stream in the dense layer's two rounding steps.

    Args:
        h: [Na, d] segment rows of the layer input; `rows` says which of them are the query rows.
        cos, sin: [Na, D] RoPE tables of the segment rows.
        tile: with `tile_attention`, norms, projections, RoPE and the MLP run over row tiles that keep only their
            inputs for backward, so only k and v (every row) and q and the attention output (query rows) exist at
            full length.
        backend: the config's op backend for the attention ("auto", "reference", "triton"; None: "auto").
    """
    attn = parts.attn

    def keys(hr: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xr = parts.input_norm(hr)  # [t, d] every row: its K and V stay differentiable
        k = attn.k_proj(xr).view(xr.shape[0], attn.num_kv_heads, attn.head_dim)  # [t, H_kv, D]
        if attn.k_norm is not None:
            k = attn.k_norm(k)
        v = attn.v_proj(xr).view(xr.shape[0], attn.num_kv_heads, attn.head_dim)  # [t, H_kv, D]
        return apply_rope(k, c, s), v

    def queries(hr: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor]:
        xq = parts.input_norm(hr)  # [t, d]; row-wise, so the rows of the full norm
        q = attn.q_proj(xq).view(xq.shape[0], attn.num_heads, attn.head_dim)  # [t, H, D]
        if attn.q_norm is not None:
            q = attn.q_norm(q)
        return (apply_rope(q, c, s),)

    def post(hk: torch.Tensor, ak: torch.Tensor) -> tuple[torch.Tensor, ...]:
        o = attn.o_proj(ak)  # [t, d]
        mid = hk + o.to(hk.dtype)  # [t, d]
        y = parts.mlp(parts.post_norm(mid))  # [t, d]
        return (o, y) if split else (o + y,)

    k, v = tiled_rows_many(keys, (h, cos, sin), tile)  # [Na, H_kv, D] each
    hk = h[rows.kept]  # [Nk, d]
    (q,) = tiled_rows_many(queries, (hk, cos[rows.kept], sin[rows.kept]), tile)  # [Nk, H, D]
    a = query_rows_attention(
        q,
        k,
        v,
        rows.index,
        rows.sel.cu_seqlens,
        full.cu_seqlens,
        attn.scaling,
        sliding_window=attn.sliding_window,
        backend=backend,
    )  # [Nk, H, D]
    out = tiled_rows_many(post, (hk, a.reshape(q.shape[0], -1)), tile)
    return out if split else out[0]  # [Nk, d] each
