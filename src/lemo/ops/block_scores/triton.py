"""Fused tiled oracle block scores: the [nb, nb] map without ever holding a T x T score matrix.

One program per (query tile, key tile) on or below the diagonal. It accumulates

    acc[i, j] = sum_h relu(q_i^h . k_j^h)           (fp32; k_j^h read from kv head h // group: GQA)

over all heads, with the head loop as the pipelined inner loop (like the K loop of a matrix product, one
head-sized slice at a time, ReLU between slices), then scales by 1/sqrt(D), applies the causal mask, and takes
the max over each b x b sub-block of the tile: TILE = a multiple of b, so a program writes a
(TILE/b) x (TILE/b) patch of the map. Rows and columns past T load as zeros and score relu(0) = 0, exactly as
the reference's zero padding, because every real entry is >= 0. Memory: O(nb^2) output, nothing else.
The informativeness reduction (column and row sums of the map) stays in `reference.informativeness`.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from lemo.ops.block_scores import reference


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


# See sparse_attention/triton.py: the CPU interpreter multiplies bf16 bit patterns unless upcast first.
_UPCAST_DOT = tl.constexpr(_interpreting())


# Reductions through tl.reduce with the combine functions that tl.max / tl.sum use. Those two are
# @triton.jit library functions, fixed as compiled or interpreted when triton is first imported, so a kernel
# module reloaded under TRITON_INTERPRET=1 (the CPU tests) could not call them; tl.reduce is a builtin, and the
# interpreter recognises these combine functions and reduces with numpy. Same code as tl.max / tl.sum on GPU.
@triton.jit
def _max_fn(a, b):
    return tl.maximum(a, b)


_MAX_COMBINE = getattr(tl.standard, "_elementwise_max", _max_fn)


@triton.jit
def _rmax(x, axis: tl.constexpr):
    return tl.reduce(x, axis, _MAX_COMBINE)


@triton.jit
def _block_score_kernel(
    Q, K, OUT, T, nb, H, group, sqt, sqh, skt, skh, scale,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK: tl.constexpr, TILE: tl.constexpr, IEEE: tl.constexpr,
):  # fmt: skip
    tn = tl.program_id(0)  # key tile: fastest axis, so neighbouring programs share the query tile in L2
    tm = tl.program_id(1)  # query tile
    if tn <= tm:
        offs_m = tm * TILE + tl.arange(0, TILE)  # [TM] query rows
        offs_n = tn * TILE + tl.arange(0, TILE)  # [TN] key rows
        offs_d = tl.arange(0, BLOCK_D)
        q_ok = (offs_m[:, None] < T) & (offs_d[None, :] < HEAD_DIM)
        k_ok = (offs_n[:, None] < T) & (offs_d[None, :] < HEAD_DIM)
        q_ptrs = Q + offs_m[:, None].to(tl.int64) * sqt + offs_d[None, :]  # [TM, BD]
        k_ptrs = K + offs_n[:, None].to(tl.int64) * skt + offs_d[None, :]  # [TN, BD]
        acc = tl.full([TILE, TILE], 0.0, tl.float32)
        for h in range(H):
            q = tl.load(q_ptrs + h * sqh, mask=q_ok, other=0.0)  # [TM, BD]
            k = tl.load(k_ptrs + (h // group) * skh, mask=k_ok, other=0.0)  # [TN, BD]
            if _UPCAST_DOT:
                s = tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32)), input_precision="ieee")
            elif IEEE:
                s = tl.dot(q, tl.trans(k), input_precision="ieee")
            else:
                s = tl.dot(q, tl.trans(k))  # [TM, TN] bf16 products, fp32 accumulation
            acc += tl.maximum(s, 0.0)
        acc = acc * scale
        acc = tl.where(
            offs_m[:, None] >= offs_n[None, :], acc, 0.0
        )  # causal; only the diagonal tile has j > i
        tile_max = _rmax(
            _rmax(tl.reshape(acc, [TILE // BLOCK, BLOCK, TILE // BLOCK, BLOCK]), 3), 1
        )  # [TILE/b, TILE/b]
        bm = tm * (TILE // BLOCK) + tl.arange(0, TILE // BLOCK)  # map rows
        bn = tn * (TILE // BLOCK) + tl.arange(0, TILE // BLOCK)  # map columns
        ok = (bm[:, None] < nb) & (bn[None, :] < nb)
        tl.store(OUT + bm[:, None] * nb + bn[None, :], tile_max, mask=ok)


def _launch_options(block_size: int, dtype: torch.dtype) -> tuple[int, dict]:
    """(tile, launch options); the tile holds whole score blocks.

    bf16: 128 x 128 tiles give the matrix units enough work per head slice; 8 warps keep the fp32 accumulator at
    about 200 registers a thread, 3 stages overlap the per-head loads (192 KB of shared memory at D = 128).
    fp32 operands are twice as large: 64-row tiles and fewer stages stay inside the 227 KB a block may use.
    Tiny tiles under the interpreter, so the CPU tests cover several tiles.
    """
    if _interpreting():
        return max(32, block_size), dict(num_warps=1, num_stages=1)
    if dtype == torch.float32:
        tile = max(64, block_size)
        return tile, dict(num_warps=4, num_stages=2 if tile == 64 else 1)
    return max(128, block_size), dict(num_warps=8, num_stages=3)


def supported(block_size: int, head_dim: int) -> bool:
    """Block sizes the kernel handles: powers of two up to 128 (the default is 64); head sizes up to 256."""
    return 1 <= block_size <= 128 and (block_size & (block_size - 1)) == 0 and head_dim <= 256


def block_score_map(q: torch.Tensor, k: torch.Tensor, block_size: int) -> torch.Tensor:
    """[nb, nb] fp32 lower-triangular block map; same contract as `reference.block_score_map`.

    Args:
        q: [T, H, D] pre-RoPE queries; k: [T, H_kv, D] pre-RoPE keys (H a multiple of H_kv).
        block_size: b; T need not be a multiple of b.
    """
    T, H, D = q.shape
    if k.shape[0] != T or k.shape[2] != D or H % k.shape[1] != 0:
        raise ValueError(
            f"q {tuple(q.shape)} and k {tuple(k.shape)} do not match as [T, H, D] / [T, H_kv, D]."
        )
    if not supported(block_size, D):
        # Odd block sizes: the tiled PyTorch reference (exact, bounded memory, slower).
        return reference.block_score_map(q, k, block_size)
    if q.dtype != k.dtype:
        k = k.to(q.dtype)
    q = q if q.stride(-1) == 1 else q.contiguous()
    k = k if k.stride(-1) == 1 else k.contiguous()
    nb = triton.cdiv(T, block_size)
    out = torch.zeros(nb, nb, dtype=torch.float32, device=q.device)  # [nb, nb]; upper triangle stays 0
    if T == 0:
        return out
    tile, launch = _launch_options(block_size, q.dtype)
    nt = triton.cdiv(T, tile)
    _block_score_kernel[(nt, nt)](
        q, k, out, T, nb, H, H // k.shape[1], q.stride(0), q.stride(1), k.stride(0), k.stride(1), D**-0.5,
        HEAD_DIM=D, BLOCK_D=max(16, triton.next_power_of_2(D)), BLOCK=block_size, TILE=tile,
        IEEE=q.dtype == torch.float32, **launch,
    )  # fmt: skip
    return out
