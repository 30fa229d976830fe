"""Attention among kept tokens only, and the permutation-free residual update (docs/design.md section 1, steps 4-5).

Layout: kept tokens of all segments are packed one after another ("varlen"): segment s owns rows
cu_seqlens[s]:cu_seqlens[s+1]. Inside a segment rows are in their original order, so causality among kept
tokens is plain index order; `positions` (original token positions) only matter for a sliding window.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right


def varlen_causal_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: list[int],
    scale: float,
    positions: torch.Tensor | None = None,
    sliding_window: int | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Causal attention inside each segment of a packed set of kept tokens.

    Args:
        q: [N, H, D] queries (RoPE applied at original positions).
        k, v: [N, H_kv, D]; H a multiple of H_kv (GQA).
        cu_seqlens: S+1 segment offsets into the N rows, starting at 0 and ending at N.
        scale: softmax scale (usually D ** -0.5).
        positions: [N] original positions; needed only with `sliding_window`.
        sliding_window: a key j is visible to query i only if pos_i - pos_j < sliding_window (HF semantics).

    Returns:
        [N, H, D] attention output in the dtype of q.
    """
    if sliding_window is not None and positions is None:
        raise ValueError("sliding_window needs the original token positions.")
    gqa = q.shape[1] != k.shape[1]
    outs = []
    for s0, s1 in itertools.pairwise(cu_seqlens):
        qs = q[s0:s1].transpose(0, 1).unsqueeze(0)  # [1, H, n, D]
        ks = k[s0:s1].transpose(0, 1).unsqueeze(0)  # [1, H_kv, n, D]
        vs = v[s0:s1].transpose(0, 1).unsqueeze(0)  # [1, H_kv, n, D]
        mask = None
        if sliding_window is not None:
            p = positions[s0:s1]  # [n]
            diff = p[:, None] - p[None, :]  # [n, n]
            mask = (diff >= 0) & (diff < sliding_window)  # [n, n]
        o = F.scaled_dot_product_attention(
            qs,
            ks,
            vs,
            attn_mask=mask,
            is_causal=mask is None,
            scale=scale,
            dropout_p=dropout_p,
            enable_gqa=gqa,
        )  # [1, H, n, D]
        outs.append(o[0].transpose(0, 1))  # [n, H, D]
    return torch.cat(outs, dim=0) if outs else q.new_zeros(q.shape)


def add_rows(residual: torch.Tensor, rows: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """residual with `update` added at `rows`; every other row is untouched (eliminated tokens skip the sublayer).

    Args:
        residual: [M, d] flattened hidden states.
        rows: [N] int64 row ids, distinct.
        update: [N, d].

    A new tensor; `op.add_rows_` is the in-place form the sparse layer uses when nothing else keeps the residual.
    """
    return residual.index_add(0, rows, update.to(residual.dtype))


def _runs(index: torch.Tensor) -> list[tuple[int, int]]:
    """[(start, end)) spans of consecutive values in a sorted index [n] (kept rows come in whole blocks)."""
    if index.numel() == 0:
        return []
    breaks = (torch.nonzero(index[1:] != index[:-1] + 1).flatten() + 1).tolist()
    bounds = [0, *breaks, index.numel()]
    return list(itertools.pairwise(bounds))


def query_rows_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_index: torch.Tensor,
    cu_q: list[int],
    cu_kv: list[int],
    scale: float,
    sliding_window: int | None = None,
) -> torch.Tensor:
    """Causal attention of a subset of each segment's rows (the queries) against every row of the segment.

    What backward elimination needs: the kept rows' queries see the keys and values of all rows, eliminated ones
    included, so an eliminated row still gets gradient through its K and V.

    Each run of consecutive query rows [p, p+m) against keys [0, p+m) is causal attention aligned to the lower
    right, which SDPA's flash and memory-efficient kernels run without a materialized mask; kept rows come in
    whole blocks, so there are few runs. A sliding window needs the explicit mask.

    Args:
        q: [Nq, H, D] queries of the chosen rows, segment after segment (`cu_q` S+1 offsets), RoPE applied.
        k, v: [Nkv, H_kv, D] keys and values of every row of every segment (`cu_kv` S+1 offsets).
        q_index: [Nq] int64 index of each query's row inside its segment (0 = the segment's first row), sorted
            within the segment; a query sees the keys at indices <= its own (and within `sliding_window`).

    Returns:
        [Nq, H, D] in the dtype of q.
    """
    gqa = q.shape[1] != k.shape[1]
    out = q.new_empty(q.shape)
    for (q0, q1), k0 in zip(itertools.pairwise(cu_q), cu_kv):
        idx = q_index[q0:q1]  # [nq]
        for r0, r1 in _runs(idx):
            p, m = int(idx[r0]), r1 - r0
            qs = q[q0 + r0 : q0 + r1].transpose(0, 1).unsqueeze(0)  # [1, H, m, D]
            ks = k[k0 : k0 + p + m].transpose(0, 1).unsqueeze(0)  # [1, H_kv, p+m, D]
            vs = v[k0 : k0 + p + m].transpose(0, 1).unsqueeze(0)
            if sliding_window is None:
                mask = causal_lower_right(m, p + m)
            else:
                diff = torch.arange(p, p + m, device=q.device)[:, None] - torch.arange(p + m, device=q.device)
                mask = (diff >= 0) & (diff < sliding_window)  # [m, p+m]
            o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale, enable_gqa=gqa)
            out[q0 + r0 : q0 + r1] = o[0].transpose(0, 1)  # [m, H, D]
    return out
