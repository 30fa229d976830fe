"""Triton kernels for `query_rows_attention`: the kept rows' queries against every key of their segment.

Backward elimination (sparsity/backward.py) recomputes attention for the kept rows only, but their queries
see all keys, eliminated rows included. Layout: queries q [Nq, H, D] are packed segment after segment
(`cu_q`), keys/values k, v [Nkv, H_kv, D] likewise (`cu_kv`); `q_index` [Nq] gives each query's position
inside its segment, sorted within the segment (kept rows come in whole blocks, so positions form a few runs).
A query at position p sees the keys at positions <= p of its own segment. One launch per phase covers every
query tile of every segment, instead of one SDPA call per run of kept rows (the reference):

    forward   one program per (query tile, head): keys [0, BLOCK_N * floor(min_pos / BLOCK_N)) unmasked,
              then up to the tile's max position with the causal mask by position (a tile may hold several
              non-adjacent runs: the mask compares positions, never row order)
    dK, dV    one program per (key tile, kv head): a binary search finds the segment's first query at or after
              the key tile; one flat loop over (query head of the GQA group, query block) to the segment end,
              masked by position: GQA without atomics, as in triton.py
    dQ        one program per (query tile, head): like the forward

The helpers, the log2-domain softmax (scale folded into log2(e)) and the lse = +inf trick for padding rows are
those of `triton.py`; launch configurations are in `configs.py` (QUERY_*).
"""

from __future__ import annotations

import itertools

import torch
import triton
import triton.language as tl

from lemo.ops._triton_reduce import interpreting as _interpreting
from lemo.ops._triton_reduce import rmax as _rmax
from lemo.ops._tuning import autotune
from lemo.ops.sparse_attention.configs import QUERY_FP32, QUERY_INTERP, QUERY_TUNE
from lemo.ops.sparse_attention.triton import (
    _LOG2E,
    _attn_bwd_delta_kernel,
    _attn_bwd_dq_step,
    _attn_fwd_step,
    _block_d,
    _dot,
    _last_dim_contiguous,
    _load_rows,
    _seq_bucket,
)


@triton.jit
def _query_tile(QI, CU, n_seg, h, group, skn, skh, svn, svh, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Query rows m0 + [0, BLOCK_M) of this program's tile (valid below q_end), their positions, the offsets of
    its segment's keys and values of head h's kv head, and the tile's key range: [0, n_split) visible to every
    row, [n_split, n_end) masked. Later tiles sit at larger positions and see more keys: they start first.

    CU holds cu_q then cu_kv ([2 * (S + 1)] int32). Padding rows get position 0: they see key 0 only, so
    their softmax stays finite; they are never stored."""
    seg = tl.program_id(2)
    q_end = tl.load(CU + seg + 1)
    m0 = tl.load(CU + seg) + (tl.num_programs(1) - 1 - tl.program_id(1)) * BLOCK_M
    kv0 = tl.load(CU + n_seg + 1 + seg)
    k_off = (h // group) * skh + kv0 * skn  # key position p of the segment is at K + k_off + p * skn
    v_off = (h // group) * svh + kv0 * svn
    offs_m = m0 + tl.arange(0, BLOCK_M)  # [BM] query rows
    rows_ok = offs_m < q_end
    pos = tl.load(QI + offs_m, mask=rows_ok, other=0).to(tl.int32)  # [BM] positions, sorted in a segment
    n_split = (tl.load(QI + m0, mask=m0 < q_end, other=0).to(tl.int32) // BLOCK_N) * BLOCK_N
    n_end = _rmax(pos, 0) + 1
    return m0, q_end, k_off, v_off, offs_m, rows_ok, pos, n_split, n_end


# The forward and dQ steps are triton.py's with positions in place of row indices (offs_m = pos, seg_end =
# n_end): their mask, pos >= key position, is the causal mask by position whatever the rows' order in the tile.


@triton.jit
def _qfwd_kernel(
    Q, K, V, O, LSE, QI, CU, sqn, sqh, skn, skh, svn, svh, son, soh,
    n_rows, n_seg, group, qk_scale, seq_bucket,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, MASK_D: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    h = tl.program_id(0)  # seq_bucket is only an autotune key
    m0, q_end, k_off, v_off, offs_m, rows_ok, pos, n_split, n_end = _query_tile(
        QI, CU, n_seg, h, group, skn, skh, svn, svh, BLOCK_M, BLOCK_N
    )
    if m0 < q_end:
        offs_d = tl.arange(0, BLOCK_D)  # [BD]
        d_ok = offs_d < HEAD_DIM
        q = _load_rows(Q + h * sqh + offs_m[:, None] * sqn + offs_d[None, :], rows_ok, d_ok, True, MASK_D)
        offs_n0 = tl.arange(0, BLOCK_N)  # [BN]
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.full([BLOCK_M], 0.0, tl.float32)
        acc = tl.full([BLOCK_M, BLOCK_D], 0.0, tl.float32)
        for n0 in range(0, n_split, BLOCK_N):
            acc, m_i, l_i = _attn_fwd_step(
                acc, m_i, l_i, q, K, V, pos, n0, n_end, k_off, v_off, skn, svn, offs_n0, offs_d, d_ok, qk_scale,
                False, MASK_D, IEEE,
            )  # fmt: skip
        # Its first key, n_split <= min(pos), is visible to every row: the running max is finite from here.
        for n0 in range(n_split, n_end, BLOCK_N):
            acc, m_i, l_i = _attn_fwd_step(
                acc, m_i, l_i, q, K, V, pos, n0, n_end, k_off, v_off, skn, svn, offs_n0, offs_d, d_ok, qk_scale,
                True, MASK_D, IEEE,
            )  # fmt: skip
        acc = acc / l_i[:, None]
        o_ptrs = O + h * soh + offs_m[:, None] * son + offs_d[None, :]
        tl.store(o_ptrs, acc.to(O.dtype.element_ty), mask=rows_ok[:, None] & d_ok[None, :])
        tl.store(LSE + h * n_rows + offs_m, m_i + tl.log2(l_i), mask=rows_ok)  # log2-domain logsumexp


@triton.jit
def _qdkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV, QI, CU,
    sqn, sqh, skn, skh, svn, svh, sdon, sdoh, sdkn, sdkh, sdvn, sdvh,
    n_rows, n_seg, group, qk_scale, sm_scale, seq_bucket,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, MASK_D: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    kvh = tl.program_id(0)
    tile = tl.num_programs(1) - 1 - tl.program_id(1)  # early key tiles are seen by the most queries
    seg = tl.program_id(2)
    kv0 = tl.load(CU + n_seg + 1 + seg)
    kv_len = tl.load(CU + n_seg + 2 + seg) - kv0
    n0 = tile * BLOCK_N  # key position inside the segment
    if n0 < kv_len:
        offs_n = n0 + tl.arange(0, BLOCK_N)  # [BN] key positions
        offs_m0 = tl.arange(0, BLOCK_M)  # [BM]
        offs_d = tl.arange(0, BLOCK_D)  # [BD]
        d_ok = offs_d < HEAD_DIM
        cols_ok = offs_n < kv_len
        rows_n = kv0 + offs_n  # [BN] key rows
        k = _load_rows(K + kvh * skh + rows_n[:, None] * skn + offs_d[None, :], cols_ok, d_ok, True, MASK_D)
        v = _load_rows(V + kvh * svh + rows_n[:, None] * svn + offs_d[None, :], cols_ok, d_ok, True, MASK_D)
        dk = tl.full([BLOCK_N, BLOCK_D], 0.0, tl.float32)
        dv = tl.full([BLOCK_N, BLOCK_D], 0.0, tl.float32)
        # Only queries at positions >= n0 see this tile; positions are sorted, so they are a suffix of the
        # segment's queries: binary search for its first row (a few scalar loads against a long loop).
        lo = tl.load(CU + seg)
        q_end = tl.load(CU + seg + 1)
        hi = q_end
        while lo < hi:
            mid = (lo + hi) // 2
            before = tl.load(QI + mid).to(tl.int32) < n0
            lo = tl.where(before, mid + 1, lo)
            hi = tl.where(before, hi, mid)
        n_m = (q_end - lo + BLOCK_M - 1) // BLOCK_M  # ceil; tl.cdiv is a library @jit (see _rmax)
        for it in range(0, group * n_m):
            g = it // n_m
            h = kvh * group + g
            offs_m = lo + (it - g * n_m) * BLOCK_M + offs_m0  # [BM] query rows
            rows_ok = offs_m < q_end
            pos = tl.load(QI + offs_m, mask=rows_ok, other=0).to(tl.int32)  # [BM]
            q = _load_rows(Q + h * sqh + offs_m[:, None] * sqn + offs_d[None, :], rows_ok, d_ok, True, MASK_D)
            do = _load_rows(
                DO + h * sdoh + offs_m[:, None] * sdon + offs_d[None, :], rows_ok, d_ok, True, MASK_D
            )  # [BM, BD]
            lse = tl.load(LSE + h * n_rows + offs_m, mask=rows_ok, other=float("inf"))  # [BM]; +inf: p = 0
            delta = tl.load(DELTA + h * n_rows + offs_m, mask=rows_ok, other=0.0)  # [BM]
            p_t = tl.exp2(_dot(k, tl.trans(q), IEEE) * qk_scale - lse[None, :])  # [BN, BM]
            p_t = tl.where(pos[None, :] >= offs_n[:, None], p_t, 0.0)
            dv += _dot(p_t.to(do.dtype), do, IEEE)  # [BN, BD]
            dp_t = _dot(v, tl.trans(do), IEEE)  # [BN, BM]
            ds_t = p_t * (dp_t - delta[None, :])  # [BN, BM]
            dk += _dot(ds_t.to(q.dtype), q, IEEE)  # [BN, BD]
        ok = cols_ok[:, None] & d_ok[None, :]
        dk_ptrs = DK + kvh * sdkh + rows_n[:, None] * sdkn + offs_d[None, :]
        tl.store(dk_ptrs, (dk * sm_scale).to(DK.dtype.element_ty), mask=ok)
        tl.store(
            DV + kvh * sdvh + rows_n[:, None] * sdvn + offs_d[None, :], dv.to(DV.dtype.element_ty), mask=ok
        )


@triton.jit
def _qdq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ, QI, CU,
    sqn, sqh, skn, skh, svn, svh, sdon, sdoh, sdqn, sdqh,
    n_rows, n_seg, group, qk_scale, sm_scale, seq_bucket,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, MASK_D: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    h = tl.program_id(0)
    m0, q_end, k_off, v_off, offs_m, rows_ok, pos, n_split, n_end = _query_tile(
        QI, CU, n_seg, h, group, skn, skh, svn, svh, BLOCK_M, BLOCK_N
    )
    if m0 < q_end:
        offs_n0 = tl.arange(0, BLOCK_N)  # [BN]
        offs_d = tl.arange(0, BLOCK_D)  # [BD]
        d_ok = offs_d < HEAD_DIM
        q = _load_rows(Q + h * sqh + offs_m[:, None] * sqn + offs_d[None, :], rows_ok, d_ok, True, MASK_D)
        do = _load_rows(DO + h * sdoh + offs_m[:, None] * sdon + offs_d[None, :], rows_ok, d_ok, True, MASK_D)
        lse = tl.load(LSE + h * n_rows + offs_m, mask=rows_ok, other=float("inf"))  # [BM]
        delta = tl.load(DELTA + h * n_rows + offs_m, mask=rows_ok, other=0.0)  # [BM]
        dq = tl.full([BLOCK_M, BLOCK_D], 0.0, tl.float32)
        for n0 in range(0, n_split, BLOCK_N):
            dq = _attn_bwd_dq_step(
                dq, q, do, lse, delta, K, V, k_off, v_off, n0, n_end, pos, offs_n0, offs_d, d_ok, skn, svn,
                qk_scale, False, MASK_D, IEEE,
            )  # fmt: skip
        for n0 in range(n_split, n_end, BLOCK_N):
            dq = _attn_bwd_dq_step(
                dq, q, do, lse, delta, K, V, k_off, v_off, n0, n_end, pos, offs_n0, offs_d, d_ok, skn, svn,
                qk_scale, True, MASK_D, IEEE,
            )  # fmt: skip
        dq_ptrs = DQ + h * sdqh + offs_m[:, None] * sdqn + offs_d[None, :]
        tl.store(dq_ptrs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=rows_ok[:, None] & d_ok[None, :])


# Launch ---------------------------------------------------------------------------------------------------

_KERNELS = {"fwd": _qfwd_kernel, "dkdv": _qdkdv_kernel, "dq": _qdq_kernel}
_TUNED = {
    name: autotune(configs=QUERY_TUNE[name], key=["HEAD_DIM", "seq_bucket"])(kernel)
    for name, kernel in _KERNELS.items()
}
# Set by benchmarks/tests to pin a configuration: {"fwd": triton.Config, ...}; missing or None means "tune".
FORCE_CONFIG: dict[str, triton.Config | None] = {}


def _run(name: str, grid_of, args: tuple, fp32: bool, head_dim: int) -> None:
    """Launch kernel `name`: a fixed configuration (FORCE_CONFIG, interpreter, fp32) or the autotuned one.

    grid_of(BLOCK_M, BLOCK_N) -> grid: the tile counts depend on the configuration."""
    bd = _block_d(head_dim)
    consts = dict(HEAD_DIM=head_dim, BLOCK_D=bd, MASK_D=bd != head_dim, IEEE=fp32)
    fallback = QUERY_INTERP if _interpreting() else QUERY_FP32 if fp32 else {}
    fixed = FORCE_CONFIG.get(name) or fallback.get(name)
    if fixed is None:
        _TUNED[name][lambda meta: grid_of(meta["BLOCK_M"], meta["BLOCK_N"])](*args, **consts)
        return
    blocks = fixed.kwargs
    grid = grid_of(blocks["BLOCK_M"], blocks["BLOCK_N"])
    _KERNELS[name][grid](*args, **consts, **blocks, num_warps=fixed.num_warps, num_stages=fixed.num_stages)


def _strides(*xs: torch.Tensor) -> tuple[int, ...]:
    return tuple(s for x in xs for s in (x.stride(0), x.stride(1)))


def query_attention_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_index: torch.Tensor, cu: torch.Tensor, max_q: int,
    max_kv: int, scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Forward kernel only: o [Nq, H, D] and the log2-domain logsumexp [H, Nq] (fp32). cu: cu_q then cu_kv."""
    Nq, H, D = q.shape
    S = cu.numel() // 2 - 1
    o = torch.empty_like(q)  # [Nq, H, D]
    lse = torch.empty(H, Nq, dtype=torch.float32, device=q.device)  # [H, Nq]
    if Nq == 0:
        return o, lse
    args = (q, k, v, o, lse, q_index, cu, *_strides(q, k, v, o), Nq, S, H // k.shape[1], scale * _LOG2E,
            _seq_bucket(max_kv))  # fmt: skip
    _run("fwd", lambda bm, bn: (H, triton.cdiv(max_q, bm), S), args, q.dtype == torch.float32, D)
    return o, lse


def query_attention_backward(
    do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor, lse: torch.Tensor,
    q_index: torch.Tensor, cu: torch.Tensor, max_q: int, max_kv: int, scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Backward kernels: dq [Nq, H, D], dk [Nkv, H_kv, D], dv [Nkv, H_kv, D] from the forward's o and lse."""
    Nq, H, D = q.shape
    Hkv = k.shape[1]
    S = cu.numel() // 2 - 1
    do = _last_dim_contiguous(do)
    if Nq == 0:  # no query: nothing attends, every gradient is zero
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    fp32 = q.dtype == torch.float32
    delta = torch.empty(H, Nq, dtype=torch.float32, device=q.device)  # [H, Nq] rowsum(o * do)
    bm = 16 if _interpreting() else 64
    _attn_bwd_delta_kernel[(H, triton.cdiv(Nq, bm))](
        o, do, delta, *_strides(o, do), Nq, HEAD_DIM=D, BLOCK_D=_block_d(D), BLOCK_M=bm
    )
    common = (Nq, S, H // Hkv, scale * _LOG2E, scale, _seq_bucket(max_kv))
    args = (q, k, v, do, lse, delta, dk, dv, q_index, cu, *_strides(q, k, v, do, dk, dv), *common)
    _run("dkdv", lambda bm_, bn: (Hkv, triton.cdiv(max_kv, bn), S), args, fp32, D)
    args = (q, k, v, do, lse, delta, dq, q_index, cu, *_strides(q, k, v, do, dq), *common)
    _run("dq", lambda bm_, bn: (H, triton.cdiv(max_q, bm_), S), args, fp32, D)
    return dq, dk, dv


class _QueryRowsAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, q_index, cu, max_q, max_kv, scale):
        o, lse = query_attention_forward(q, k, v, q_index, cu, max_q, max_kv, scale)
        ctx.save_for_backward(q, k, v, o, lse, q_index, cu)
        ctx.sizes = (max_q, max_kv, scale)
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse, q_index, cu = ctx.saved_tensors
        dq, dk, dv = query_attention_backward(do, q, k, v, o, lse, q_index, cu, *ctx.sizes)
        return dq, dk, dv, None, None, None, None, None


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_index: torch.Tensor, cu_q, cu_kv) -> None:
    shapes_ok = q.dim() == k.dim() == 3 and k.shape == v.shape and k.shape[2] == q.shape[2] <= 256
    dtypes_ok = q.dtype == k.dtype == v.dtype and q.dtype in (torch.float16, torch.bfloat16, torch.float32)
    index_ok = q_index.shape == (q.shape[0],) and q_index.dtype in (torch.int32, torch.int64)
    cu_ok = len(cu_q) == len(cu_kv) and cu_q[0] == cu_kv[0] == 0 and (cu_q[-1], cu_kv[-1]) == (len(q), len(k))
    if not (shapes_ok and dtypes_ok and index_ok and cu_ok and q.shape[1] % k.shape[1] == 0):
        raise ValueError(
            "the Triton query_rows_attention needs q [Nq, H, D], k/v [Nkv, H_kv, D] (H_kv divides H, "
            "D <= 256) in one of fp16/bf16/fp32, an integer q_index [Nq], and cu_q / cu_kv of S+1 offsets "
            f"from 0 to Nq / Nkv; got q {tuple(q.shape)} {q.dtype}, k {tuple(k.shape)} {k.dtype}, "
            f"v {tuple(v.shape)} {v.dtype}, q_index {tuple(q_index.shape)} {q_index.dtype}, cu_q {cu_q}, "
            f"cu_kv {cu_kv}."
        )


def _offsets(cu_q: list[int], cu_kv: list[int], device: torch.device) -> torch.Tensor:
    """cu_q then cu_kv as one int32 tensor [2 * (S + 1)] on `device`, copied without waiting for the GPU."""
    cu = torch.tensor([*cu_q, *cu_kv], dtype=torch.int32)  # [2 * (S + 1)]
    if device.type != "cuda":
        return cu.to(device)
    # A pageable host-to-device copy synchronizes the stream; a pinned one does not.
    return cu.pin_memory().to(device, non_blocking=True)


def query_rows_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_index: torch.Tensor, cu_q: list[int], cu_kv: list[int],
    scale: float | None = None,
) -> torch.Tensor:  # fmt: skip
    """Same contract as `reference.query_rows_attention` without a sliding window, in one launch per phase.

    Args:
        q: [Nq, H, D] queries of the chosen rows, segment after segment (`cu_q`: S+1 offsets from 0 to Nq).
        k, v: [Nkv, H_kv, D] every row of every segment (`cu_kv`: S+1 offsets from 0 to Nkv); H_kv divides H.
        q_index: [Nq] each query's row index inside its segment, sorted within the segment.
        scale: softmax scale, D ** -0.5 by default.

    Returns:
        [Nq, H, D] in q's dtype; differentiable with respect to q, k and v.
    """
    _check(q, k, v, q_index, cu_q, cu_kv)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    q, k, v = _last_dim_contiguous(q), _last_dim_contiguous(k), _last_dim_contiguous(v)
    max_q = max((b - a for a, b in itertools.pairwise(cu_q)), default=0)
    max_kv = max((b - a for a, b in itertools.pairwise(cu_kv)), default=0)
    cu = _offsets(cu_q, cu_kv, q.device)
    return _QueryRowsAttention.apply(q, k, v, q_index.contiguous(), cu, max_q, max_kv, scale)


__all__ = ["query_attention_backward", "query_attention_forward", "query_rows_attention"]
