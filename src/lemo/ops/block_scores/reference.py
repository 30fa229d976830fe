"""Oracle block scores, the definition that predictors approximate (docs/design.md section 1, step 2).

    s_ij  = sum_h relu(q_i^h . k_j^h) / sqrt(d_h)          pre-RoPE q, k; keys expanded for GQA; j <= i
    S_mn  = max_{i in block m, j in block n, j <= i} s_ij   for m >= n (lower triangle), 0 elsewhere
    I_n   = sum_{m >= n} S_mn + sum_{m < n} S_nm            every block sums exactly nb entries

The T x T matrix is never built: query blocks are processed in chunks, so memory is O(chunk * T), which is
O(T * b) at the default chunk of one block row group.
"""

from __future__ import annotations

import math

import torch

# Elements of the per-chunk score tile (H x rows x keys) allowed at once; bounds memory, not results.
_TILE_ELEMS = 1 << 24


def block_score_map(q: torch.Tensor, k: torch.Tensor, block_size: int) -> torch.Tensor:
    """Block score map S of one sequence.

    Args:
        q: [T, H, D] pre-RoPE queries.
        k: [T, H_kv, D] pre-RoPE keys; H must be a multiple of H_kv (GQA).
        block_size: b; T need not be a multiple of b (the last block is partial).

    Returns:
        [nb, nb] float32, lower triangular (row = query block m, column = key block n).
    """
    T, H, D = q.shape
    if k.shape[0] != T or k.shape[2] != D or H % k.shape[1] != 0:
        raise ValueError(
            f"q {tuple(q.shape)} and k {tuple(k.shape)} do not match as [T, H, D] / [T, H_kv, D]."
        )
    b = block_size
    nb = math.ceil(T / b)
    pad = nb * b - T
    qf = q.float().transpose(0, 1)  # [H, T, D]
    kf = k.float().repeat_interleave(H // k.shape[1], dim=1).transpose(0, 1)  # [H, T, D]
    if pad:
        # Zero rows score relu(0) = 0, which never beats a real entry (all entries are >= 0): padding is exact.
        qf = torch.nn.functional.pad(qf, (0, 0, 0, pad))  # [H, nb*b, D]
        kf = torch.nn.functional.pad(kf, (0, 0, 0, pad))  # [H, nb*b, D]
    scale = 1.0 / math.sqrt(D)
    out = torch.zeros(nb, nb, dtype=torch.float32, device=q.device)  # [nb, nb]
    rows_per_chunk = max(1, _TILE_ELEMS // (H * b * nb * b))
    pos = torch.arange(nb * b, device=q.device)
    for m0 in range(0, nb, rows_per_chunk):
        m1 = min(nb, m0 + rows_per_chunk)
        keys = m1 * b  # causal: keys beyond the chunk's last row are never needed
        s = torch.einsum("hid,hjd->hij", qf[:, m0 * b : m1 * b], kf[:, :keys])  # [H, rows, keys]
        s = s.clamp_min_(0).sum(0) * scale  # [rows, keys]
        causal = pos[m0 * b : m1 * b, None] >= pos[None, :keys]  # [rows, keys]
        s = s.masked_fill_(~causal, 0.0)
        out[m0:m1, :m1] = s.view(m1 - m0, b, m1, b).amax(dim=(1, 3))  # [rows/b, m1]
    return out


def informativeness(score_map: torch.Tensor) -> torch.Tensor:
    """I_n from a lower-triangular block map [nb, nb]: column sum (as key) + row sum left of the diagonal (as query)."""
    lower = score_map.tril()  # [nb, nb]
    return lower.sum(0) + lower.tril(-1).sum(1)  # [nb]


def block_scores(q: torch.Tensor, k: torch.Tensor, block_size: int) -> torch.Tensor:
    """Per-block informativeness I_n [nb] of one sequence (see module docstring)."""
    return informativeness(block_score_map(q, k, block_size))
