"""Triton kernels for attention among kept tokens: varlen causal flash attention, forward and backward.

One concept in one file (about 700 lines): the forward, dK/dV and dQ kernels share the tile layout below and
the launch code, and are only correct together (the backward reads the forward's lse). Their launch
configurations are in `configs.py`.

Layout (as in `reference.py`): the kept tokens of all segments are packed one after another; segment s owns
rows cu_seqlens[s]:cu_seqlens[s+1] and keeps its original token order, so causality is plain row order and
no query ever sees a key of another segment. Every kernel walks tiles of one segment only:

    forward   one program per (query tile, head):   keys [seg_start, tile) unmasked, then the diagonal masked
    dK, dV    one program per (key tile, kv head):  one loop over (query head of the GQA group, query block
                                                    from the tile to the segment end): GQA without atomics
    dQ        one program per (query tile, head):   like the forward

Rows past the end of a segment are never stored; in the backward they load lse = +inf, which makes their
probabilities exactly 0 without a row mask on the scores. The exponentials are base 2 with the softmax scale
folded into log2(e) (one multiply per score instead of two).

The residual row add that consumes this op's output lives in `triton_rows.py`. See docs/kernels.md for
measurements.
"""

from __future__ import annotations

import itertools

import torch
import triton
import triton.language as tl

from lemo.ops._triton_reduce import interpreting as _interpreting
from lemo.ops._triton_reduce import rmax as _rmax
from lemo.ops._triton_reduce import rsum as _rsum
from lemo.ops._tuning import autotune
from lemo.ops.sparse_attention.configs import FP32 as _FP32
from lemo.ops.sparse_attention.configs import INTERP as _INTERP
from lemo.ops.sparse_attention.configs import TUNE as _TUNE

_LOG2E = 1.4426950408889634


# Triton's CPU interpreter multiplies bf16 operands as their raw 16-bit patterns (np.uint16 storage); upcasting
# to fp32 there is exact and gives the products the GPU's tensor cores compute. Read at import, as triton.jit is.
_UPCAST_DOT = tl.constexpr(_interpreting())


# ---------------------------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------------------------


@triton.jit
def _load_rows(ptrs, rows_ok, d_ok, MASK_ROWS: tl.constexpr, MASK_D: tl.constexpr):
    """Load a [rows, BLOCK_D] tile; masks only where needed, so unpadded, in-segment tiles load unmasked."""
    if MASK_ROWS and MASK_D:
        x = tl.load(ptrs, mask=rows_ok[:, None] & d_ok[None, :], other=0.0)
    elif MASK_ROWS:
        x = tl.load(ptrs, mask=rows_ok[:, None], other=0.0)
    elif MASK_D:
        x = tl.load(ptrs, mask=d_ok[None, :], other=0.0)
    else:
        x = tl.load(ptrs)
    return x


@triton.jit
def _dot(a, b, IEEE: tl.constexpr):
    # fp32 inputs use full fp32 products so the fp32 path matches the reference tightly; bf16/fp16 ignore this.
    if _UPCAST_DOT:
        c = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    elif IEEE:
        c = tl.dot(a, b, input_precision="ieee")
    else:
        c = tl.dot(a, b)
    return c


# ---------------------------------------------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------------------------------------------


@triton.jit
def _attn_fwd_step(
    acc,
    m_i,
    l_i,
    q,
    K,
    V,
    offs_m,
    n0,
    seg_end,
    kv_off_k,
    kv_off_v,
    skn,
    svn,
    offs_n0,
    offs_d,
    d_ok,
    qk_scale,
    DIAG: tl.constexpr,
    MASK_D: tl.constexpr,
    IEEE: tl.constexpr,
):
    offs_n = n0 + offs_n0  # [BN]
    cols_ok = offs_n < seg_end  # [BN]
    k = _load_rows(
        K + kv_off_k + offs_n[:, None] * skn + offs_d[None, :], cols_ok, d_ok, DIAG, MASK_D
    )  # [BN, BD]
    s = _dot(q, tl.trans(k), IEEE) * qk_scale  # [BM, BN] log2 domain
    if DIAG:
        s = tl.where((offs_m[:, None] >= offs_n[None, :]) & cols_ok[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, _rmax(s, 1))  # [BM]; finite: every row sees at least its tile's first key
    p = tl.exp2(s - m_new[:, None])  # [BM, BN]
    alpha = tl.exp2(m_i - m_new)  # [BM]
    l_i = l_i * alpha + _rsum(p, 1)
    v = _load_rows(
        V + kv_off_v + offs_n[:, None] * svn + offs_d[None, :], cols_ok, d_ok, DIAG, MASK_D
    )  # [BN, BD]
    acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, IEEE)  # [BM, BD]
    return acc, m_new, l_i


@triton.jit
def _attn_fwd_kernel(
    Q,
    K,
    V,
    O,
    LSE,
    CU,
    sqn,
    sqh,
    skn,
    skh,
    svn,
    svh,
    son,
    soh,
    n_rows,
    group,
    qk_scale,
    seq_bucket,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    MASK_D: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    h = tl.program_id(0)
    # The last tiles of a segment see the most keys: start them first. seq_bucket is only an autotune key.
    tile = tl.num_programs(1) - 1 - tl.program_id(1)
    seg = tl.program_id(2)
    seg_start = tl.load(CU + seg)
    seg_end = tl.load(CU + seg + 1)
    m0 = seg_start + tile * BLOCK_M
    if m0 < seg_end:
        kvh = h // group
        offs_m = m0 + tl.arange(0, BLOCK_M)  # [BM]
        offs_n0 = tl.arange(0, BLOCK_N)  # [BN]
        offs_d = tl.arange(0, BLOCK_D)  # [BD]
        d_ok = offs_d < HEAD_DIM
        rows_ok = offs_m < seg_end
        q = _load_rows(
            Q + h * sqh + offs_m[:, None] * sqn + offs_d[None, :], rows_ok, d_ok, True, MASK_D
        )  # [BM, BD]
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.full([BLOCK_M], 0.0, tl.float32)
        acc = tl.full([BLOCK_M, BLOCK_D], 0.0, tl.float32)
        # Keys strictly before the tile: all visible, all inside the segment (tile starts are BLOCK_N aligned).
        for n0 in range(seg_start, m0, BLOCK_N):
            acc, m_i, l_i = _attn_fwd_step(
                acc,
                m_i,
                l_i,
                q,
                K,
                V,
                offs_m,
                n0,
                seg_end,
                kvh * skh,
                kvh * svh,
                skn,
                svn,
                offs_n0,
                offs_d,
                d_ok,
                qk_scale,
                False,
                MASK_D,
                IEEE,
            )
        # The diagonal: causal mask and the segment end.
        for n0 in range(m0, tl.minimum(m0 + BLOCK_M, seg_end), BLOCK_N):
            acc, m_i, l_i = _attn_fwd_step(
                acc,
                m_i,
                l_i,
                q,
                K,
                V,
                offs_m,
                n0,
                seg_end,
                kvh * skh,
                kvh * svh,
                skn,
                svn,
                offs_n0,
                offs_d,
                d_ok,
                qk_scale,
                True,
                MASK_D,
                IEEE,
            )
        acc = acc / l_i[:, None]
        o_ptrs = O + h * soh + offs_m[:, None] * son + offs_d[None, :]
        tl.store(o_ptrs, acc.to(O.dtype.element_ty), mask=rows_ok[:, None] & d_ok[None, :])
        tl.store(LSE + h * n_rows + offs_m, m_i + tl.log2(l_i), mask=rows_ok)  # log2-domain logsumexp


# ---------------------------------------------------------------------------------------------------------------
# Backward
# ---------------------------------------------------------------------------------------------------------------


@triton.jit
def _attn_bwd_delta_kernel(
    O,
    DO,
    DELTA,
    son,
    soh,
    sdon,
    sdoh,
    n_rows,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """delta[h, i] = sum_d o[i, h, d] * do[i, h, d] (the softmax-backward row term)."""
    h = tl.program_id(0)
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    ok = (offs_m[:, None] < n_rows) & (offs_d[None, :] < HEAD_DIM)
    o = tl.load(O + h * soh + offs_m[:, None] * son + offs_d[None, :], mask=ok, other=0.0).to(tl.float32)
    do = tl.load(DO + h * sdoh + offs_m[:, None] * sdon + offs_d[None, :], mask=ok, other=0.0).to(tl.float32)
    tl.store(DELTA + h * n_rows + offs_m, _rsum(o * do, 1), mask=offs_m < n_rows)


@triton.jit
def _attn_bwd_dkdv_step(
    dk,
    dv,
    k,
    v,
    Q,
    DO,
    LSE,
    DELTA,
    q_off,
    do_off,
    lse_off,
    m0,
    seg_end,
    offs_n,
    offs_m0,
    offs_d,
    d_ok,
    sqn,
    sdon,
    qk_scale,
    DIAG: tl.constexpr,
    MASK_D: tl.constexpr,
    IEEE: tl.constexpr,
):
    offs_m = m0 + offs_m0  # [BM]
    rows_ok = offs_m < seg_end
    q = _load_rows(
        Q + q_off + offs_m[:, None] * sqn + offs_d[None, :], rows_ok, d_ok, True, MASK_D
    )  # [BM, BD]
    do = _load_rows(
        DO + do_off + offs_m[:, None] * sdon + offs_d[None, :], rows_ok, d_ok, True, MASK_D
    )  # [BM, BD]
    lse = tl.load(LSE + lse_off + offs_m, mask=rows_ok, other=float("inf"))  # [BM]; +inf: p = 0 past the end
    delta = tl.load(DELTA + lse_off + offs_m, mask=rows_ok, other=0.0)  # [BM]
    p_t = tl.exp2(_dot(k, tl.trans(q), IEEE) * qk_scale - lse[None, :])  # [BN, BM]
    if DIAG:
        p_t = tl.where(offs_m[None, :] >= offs_n[:, None], p_t, 0.0)
    dv += _dot(p_t.to(do.dtype), do, IEEE)  # [BN, BD]
    dp_t = _dot(v, tl.trans(do), IEEE)  # [BN, BM]
    ds_t = p_t * (dp_t - delta[None, :])  # [BN, BM]
    dk += _dot(ds_t.to(q.dtype), q, IEEE)  # [BN, BD]
    return dk, dv


@triton.jit
def _attn_bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV, CU,
    sqn, sqh, skn, skh, svn, svh, sdon, sdoh, sdkn, sdkh, sdvn, sdvh,
    n_rows, group, qk_scale, sm_scale, seq_bucket,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, MASK_D: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    kvh = tl.program_id(0)
    tile = tl.num_programs(1) - 1 - tl.program_id(1)
    seg = tl.program_id(2)
    seg_start = tl.load(CU + seg)
    seg_end = tl.load(CU + seg + 1)
    n0 = seg_start + tile * BLOCK_N
    if n0 < seg_end:
        offs_n = n0 + tl.arange(0, BLOCK_N)  # [BN]
        offs_m0 = tl.arange(0, BLOCK_M)  # [BM]
        offs_d = tl.arange(0, BLOCK_D)  # [BD]
        d_ok = offs_d < HEAD_DIM
        cols_ok = offs_n < seg_end
        k = _load_rows(
            K + kvh * skh + offs_n[:, None] * skn + offs_d[None, :], cols_ok, d_ok, True, MASK_D
        )  # [BN, BD]
        v = _load_rows(
            V + kvh * svh + offs_n[:, None] * svn + offs_d[None, :], cols_ok, d_ok, True, MASK_D
        )  # [BN, BD]
        dk = tl.full([BLOCK_N, BLOCK_D], 0.0, tl.float32)
        dv = tl.full([BLOCK_N, BLOCK_D], 0.0, tl.float32)
        # One flat loop over (query head of the group, query block from the key tile to the segment end), with
        # the causal mask on every step: two loop phases nested in a head loop cost 255 registers and spills
        # at D = 128 (compiled for sm_90), the flat loop about 235 and none; the mask costs a few ALU ops a score.
        n_m = (seg_end - n0 + BLOCK_M - 1) // BLOCK_M  # ceil; tl.cdiv is a library @jit (see _rmax)
        for it in range(0, group * n_m):
            g = it // n_m
            h = kvh * group + g
            m0 = n0 + (it - g * n_m) * BLOCK_M
            dk, dv = _attn_bwd_dkdv_step(
                dk, dv, k, v, Q, DO, LSE, DELTA, h * sqh, h * sdoh, h * n_rows, m0, seg_end, offs_n, offs_m0,
                offs_d, d_ok, sqn, sdon, qk_scale, True, MASK_D, IEEE,
            )  # fmt: skip
        ok = cols_ok[:, None] & d_ok[None, :]
        dk_ptrs = DK + kvh * sdkh + offs_n[:, None] * sdkn + offs_d[None, :]
        tl.store(dk_ptrs, (dk * sm_scale).to(DK.dtype.element_ty), mask=ok)
        tl.store(
            DV + kvh * sdvh + offs_n[:, None] * sdvn + offs_d[None, :], dv.to(DV.dtype.element_ty), mask=ok
        )


@triton.jit
def _attn_bwd_dq_step(
    dq,
    q,
    do,
    lse,
    delta,
    K,
    V,
    k_off,
    v_off,
    n0,
    seg_end,
    offs_m,
    offs_n0,
    offs_d,
    d_ok,
    skn,
    svn,
    qk_scale,
    DIAG: tl.constexpr,
    MASK_D: tl.constexpr,
    IEEE: tl.constexpr,
):
    offs_n = n0 + offs_n0  # [BN]
    cols_ok = offs_n < seg_end
    k = _load_rows(
        K + k_off + offs_n[:, None] * skn + offs_d[None, :], cols_ok, d_ok, DIAG, MASK_D
    )  # [BN, BD]
    v = _load_rows(
        V + v_off + offs_n[:, None] * svn + offs_d[None, :], cols_ok, d_ok, DIAG, MASK_D
    )  # [BN, BD]
    p = tl.exp2(_dot(q, tl.trans(k), IEEE) * qk_scale - lse[:, None])  # [BM, BN]
    if DIAG:
        p = tl.where((offs_m[:, None] >= offs_n[None, :]) & cols_ok[None, :], p, 0.0)
    dp = _dot(do, tl.trans(v), IEEE)  # [BM, BN]
    ds = p * (dp - delta[:, None])  # [BM, BN]
    dq += _dot(ds.to(k.dtype), k, IEEE)  # [BM, BD]
    return dq


@triton.jit
def _attn_bwd_dq_kernel(
    Q,
    K,
    V,
    DO,
    LSE,
    DELTA,
    DQ,
    CU,
    sqn,
    sqh,
    skn,
    skh,
    svn,
    svh,
    sdon,
    sdoh,
    sdqn,
    sdqh,
    n_rows,
    group,
    qk_scale,
    sm_scale,
    seq_bucket,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    MASK_D: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    h = tl.program_id(0)
    tile = tl.num_programs(1) - 1 - tl.program_id(1)
    seg = tl.program_id(2)
    seg_start = tl.load(CU + seg)
    seg_end = tl.load(CU + seg + 1)
    m0 = seg_start + tile * BLOCK_M
    if m0 < seg_end:
        kvh = h // group
        offs_m = m0 + tl.arange(0, BLOCK_M)  # [BM]
        offs_n0 = tl.arange(0, BLOCK_N)  # [BN]
        offs_d = tl.arange(0, BLOCK_D)  # [BD]
        d_ok = offs_d < HEAD_DIM
        rows_ok = offs_m < seg_end
        q = _load_rows(
            Q + h * sqh + offs_m[:, None] * sqn + offs_d[None, :], rows_ok, d_ok, True, MASK_D
        )  # [BM, BD]
        do = _load_rows(
            DO + h * sdoh + offs_m[:, None] * sdon + offs_d[None, :], rows_ok, d_ok, True, MASK_D
        )  # [BM, BD]
        lse = tl.load(LSE + h * n_rows + offs_m, mask=rows_ok, other=float("inf"))  # [BM]
        delta = tl.load(DELTA + h * n_rows + offs_m, mask=rows_ok, other=0.0)  # [BM]
        dq = tl.full([BLOCK_M, BLOCK_D], 0.0, tl.float32)
        for n0 in range(seg_start, m0, BLOCK_N):
            dq = _attn_bwd_dq_step(
                dq,
                q,
                do,
                lse,
                delta,
                K,
                V,
                kvh * skh,
                kvh * svh,
                n0,
                seg_end,
                offs_m,
                offs_n0,
                offs_d,
                d_ok,
                skn,
                svn,
                qk_scale,
                False,
                MASK_D,
                IEEE,
            )
        for n0 in range(m0, tl.minimum(m0 + BLOCK_M, seg_end), BLOCK_N):
            dq = _attn_bwd_dq_step(
                dq,
                q,
                do,
                lse,
                delta,
                K,
                V,
                kvh * skh,
                kvh * svh,
                n0,
                seg_end,
                offs_m,
                offs_n0,
                offs_d,
                d_ok,
                skn,
                svn,
                qk_scale,
                True,
                MASK_D,
                IEEE,
            )
        ok = rows_ok[:, None] & d_ok[None, :]
        tl.store(
            DQ + h * sdqh + offs_m[:, None] * sdqn + offs_d[None, :],
            (dq * sm_scale).to(DQ.dtype.element_ty),
            mask=ok,
        )


# ---------------------------------------------------------------------------------------------------------------
# Launch configurations
# ---------------------------------------------------------------------------------------------------------------


# The candidate tables (bf16/fp16 tuning, fp32, interpreter) are in configs.py.
_KERNELS = {"fwd": _attn_fwd_kernel, "dkdv": _attn_bwd_dkdv_kernel, "dq": _attn_bwd_dq_kernel}
_TUNED = {
    name: autotune(configs=_TUNE[name], key=["HEAD_DIM", "seq_bucket"])(kernel)
    for name, kernel in _KERNELS.items()
}
# Set by benchmarks/tests to pin a configuration: {"fwd": triton.Config, ...}; None entries mean "tune".
FORCE_CONFIG: dict[str, triton.Config | None] = {}


def _launch(name: str, grid_of, args: tuple, fp32: bool, **constexprs) -> None:
    """Run kernel `name` with a fixed configuration (interpreter, fp32, FORCE_CONFIG) or the autotuned one."""
    fixed = FORCE_CONFIG.get(name)
    if fixed is None and _interpreting():
        fixed = _INTERP[name]
    elif fixed is None and fp32:
        fixed = _FP32[name]
    if fixed is None:
        _TUNED[name][lambda meta: grid_of(meta["BLOCK_M"], meta["BLOCK_N"])](*args, **constexprs)
        return
    blocks = fixed.kwargs
    _KERNELS[name][grid_of(blocks["BLOCK_M"], blocks["BLOCK_N"])](
        *args, **constexprs, **blocks, num_warps=fixed.num_warps, num_stages=fixed.num_stages
    )


def _seq_bucket(max_seqlen: int) -> int:
    # Autotune once per power-of-two length class; >= 1024 keeps the argument's integer specialisation fixed.
    return max(1024, triton.next_power_of_2(max(max_seqlen, 1)))


def _block_d(head_dim: int) -> int:
    return max(16, triton.next_power_of_2(head_dim))


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 3 or k.shape != v.shape or k.shape[0] != q.shape[0] or k.shape[2] != q.shape[2]:
        raise ValueError(
            f"expected q [N, H, D], k/v [N, H_kv, D]; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}."
        )
    if q.shape[1] % k.shape[1] != 0:
        raise ValueError(f"H={q.shape[1]} is not a multiple of H_kv={k.shape[1]}.")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"q, k, v must share one of fp16/bf16/fp32; got {q.dtype}, {k.dtype}, {v.dtype}.")
    if q.shape[2] > 256:
        raise ValueError(
            f"head size {q.shape[2]} > 256 is not supported by the Triton kernel; use backend='reference'."
        )


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def attention_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_seqlen: int, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward kernel only: returns o [N, H, D] and the log2-domain logsumexp [H, N] (fp32)."""
    N, H, D = q.shape
    S = cu.numel() - 1
    o = torch.empty_like(q)  # [N, H, D]
    lse = torch.empty(H, N, dtype=torch.float32, device=q.device)  # [H, N]
    if N == 0 or S == 0:
        return o, lse
    args = (
        q, k, v, o, lse, cu,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), o.stride(0), o.stride(1),
        N, H // k.shape[1], scale * _LOG2E, _seq_bucket(max_seqlen),
    )  # fmt: skip
    grid = lambda bm, bn: (H, triton.cdiv(max_seqlen, bm), S)
    _launch(
        "fwd",
        grid,
        args,
        q.dtype == torch.float32,
        HEAD_DIM=D,
        BLOCK_D=_block_d(D),
        MASK_D=_block_d(D) != D,
        IEEE=q.dtype == torch.float32,
    )
    return o, lse


def attention_backward(
    do: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    o: torch.Tensor,
    lse: torch.Tensor,
    cu: torch.Tensor,
    max_seqlen: int,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward kernels: (dq [N, H, D], dk [N, H_kv, D], dv [N, H_kv, D]) from the forward's o and lse."""
    N, H, D = q.shape
    Hkv = k.shape[1]
    S = cu.numel() - 1
    do = _last_dim_contiguous(do)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    if N == 0 or S == 0:
        return dq.zero_(), dk.zero_(), dv.zero_()
    BD = _block_d(D)
    ieee = q.dtype == torch.float32
    delta = torch.empty(H, N, dtype=torch.float32, device=q.device)  # [H, N]
    bm = 16 if _interpreting() else 64
    _attn_bwd_delta_kernel[(H, triton.cdiv(N, bm))](
        o,
        do,
        delta,
        o.stride(0),
        o.stride(1),
        do.stride(0),
        do.stride(1),
        N,
        HEAD_DIM=D,
        BLOCK_D=BD,
        BLOCK_M=bm,
    )
    common = (N, H // Hkv, scale * _LOG2E, scale, _seq_bucket(max_seqlen))
    dkdv_args = (
        q, k, v, do, lse, delta, dk, dv, cu,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), do.stride(0), do.stride(1),
        dk.stride(0), dk.stride(1), dv.stride(0), dv.stride(1), *common,
    )  # fmt: skip
    _launch(
        "dkdv",
        lambda bm_, bn: (Hkv, triton.cdiv(max_seqlen, bn), S),
        dkdv_args,
        ieee,
        HEAD_DIM=D,
        BLOCK_D=BD,
        MASK_D=BD != D,
        IEEE=ieee,
    )
    dq_args = (
        q, k, v, do, lse, delta, dq, cu,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), do.stride(0), do.stride(1),
        dq.stride(0), dq.stride(1), *common,
    )  # fmt: skip
    _launch(
        "dq",
        lambda bm_, bn: (H, triton.cdiv(max_seqlen, bm_), S),
        dq_args,
        ieee,
        HEAD_DIM=D,
        BLOCK_D=BD,
        MASK_D=BD != D,
        IEEE=ieee,
    )
    return dq, dk, dv


class _VarlenCausalAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, cu, max_seqlen, scale):
        o, lse = attention_forward(q, k, v, cu, max_seqlen, scale)
        ctx.save_for_backward(q, k, v, o, lse, cu)
        ctx.max_seqlen, ctx.scale = max_seqlen, scale
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse, cu = ctx.saved_tensors
        dq, dk, dv = attention_backward(do, q, k, v, o, lse, cu, ctx.max_seqlen, ctx.scale)
        return dq, dk, dv, None, None, None


def varlen_causal_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: list[int], scale: float | None = None
) -> torch.Tensor:
    """Causal attention inside each packed segment; same contract as `reference.varlen_causal_attention`.

    Args:
        q: [N, H, D]; k, v: [N, H_kv, D] (GQA when H_kv < H); any D up to 256 (padded to a power of two inside).
        cu_seqlens: S+1 segment offsets into the N rows, from 0 to N.
        scale: softmax scale, D ** -0.5 by default.

    Returns:
        [N, H, D] in q's dtype; differentiable with respect to q, k and v.
    """
    _check(q, k, v)
    if cu_seqlens[0] != 0 or cu_seqlens[-1] != q.shape[0]:
        raise ValueError(
            f"cu_seqlens must run from 0 to N={q.shape[0]}; got {cu_seqlens[0]}..{cu_seqlens[-1]}."
        )
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    q, k, v = _last_dim_contiguous(q), _last_dim_contiguous(k), _last_dim_contiguous(v)
    max_seqlen = max((b - a for a, b in itertools.pairwise(cu_seqlens)), default=0)
    cu = torch.tensor(cu_seqlens, dtype=torch.int32, device=q.device)  # [S+1]
    return _VarlenCausalAttention.apply(q, k, v, cu, max_seqlen, scale)


__all__ = ["attention_backward", "attention_forward", "varlen_causal_attention"]
