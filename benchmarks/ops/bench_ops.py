"""Microbenchmarks of the Triton ops on one GPU (issue 4): CSV rows under --out, one file per op.

    PYTHONPATH=src python benchmarks/ops/bench_ops.py --out benchmarks/results --commit $(git rev-parse --short HEAD)
    (add --only query_rows,block_scores to run some sections only)

Shapes are Llama-3-8B's attention (H=32, H_kv=8, D=128, d=4096, V=128256), bf16, batch 1, random inputs.
Kept tokens: the first round(r * nb) blocks' worth of rows (timing depends only on how many rows are kept).
Times are medians over repeated runs timed with CUDA events after warm-up (which also runs the autotuner).

- ops_sparse_attention.csv  attention forward+backward against keep ratio: the varlen kernel on the kept rows,
  the same plus the permutation-free residual add, dense SDPA (flash) on all T rows, and the naive path
  (gather q/k/v rows, SDPA flash on them, zero-pad back to T rows, add to the residual); achieved TFLOP/s
  as a fraction of the measured dense bf16 matmul rate.
- ops_token_movement.csv    the token movement alone (no attention), naive vs the fused row add.
- ops_block_scores.csv      fused block scoring against an SDPA flash forward on the same q/k.
- ops_query_rows.csv        backward elimination's kept queries against all keys (`query_rows_attention`),
  forward+backward and forward: the reference (one SDPA call per run of kept rows) against the Triton kernel, at
  16K and 32K with 0.6 of the 64-token blocks kept at random (first and last always).
- ops_segmented_ce.csv      peak memory and time of LM head + loss, forward+backward: HF's loss on full logits,
  the checkpointed reference, and the fused Triton op.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
import triton

from lemo.ops.block_scores import reference as bs_ref
from lemo.ops.block_scores import triton as bs_tri
from lemo.ops.segmented_ce import reference as ce_ref
from lemo.ops.segmented_ce import triton as ce_tri
from lemo.ops.sparse_attention import reference as sa_ref
from lemo.ops.sparse_attention import triton as sa_tri
from lemo.ops.sparse_attention import triton_query as sa_query
from lemo.ops.sparse_attention import triton_rows as sa_rows

H, HKV, D, DM, VOCAB, BLOCK = 32, 8, 128, 4096, 128256, 64
DT = torch.bfloat16
DEV = "cuda"


def bench(fn, *, min_reps=3, max_reps=30, budget_s=1.5, warmup=2) -> float:
    """Median milliseconds of fn() over CUDA-event-timed repetitions, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times, spent = [], 0.0
    while len(times) < min_reps or (len(times) < max_reps and spent < budget_s):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
        spent += times[-1] / 1e3
    return statistics.median(times)


class Writer:
    """Appends rows to one CSV per op, with the provenance columns every results file carries."""

    def __init__(self, out: Path, meta: dict):
        self.out, self.meta, self.files = out, meta, {}

    def row(self, name: str, **values):
        row = {**values, **self.meta}
        path = self.out / f"ops_{name}.csv"
        new = name not in self.files
        with path.open("w" if new else "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
                self.files[name] = True
            w.writerow(row)
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in values.items()}
        print(name, shown, flush=True)


def matmul_tflops() -> float:
    a = torch.randn(8192, 8192, device=DEV, dtype=DT)
    b = torch.randn(8192, 8192, device=DEV, dtype=DT)
    ms = bench(lambda: a @ b, min_reps=10, warmup=3)
    return 2 * 8192**3 / ms / 1e9


def sdpa(q, k, v):
    """Flash SDPA on [T, H, D] tensors (views as [1, H, T, D]); GQA native when the backend allows."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        o = F.scaled_dot_product_attention(
            q.transpose(0, 1)[None],
            k.transpose(0, 1)[None],
            v.transpose(0, 1)[None],
            is_causal=True,
            enable_gqa=True,
        )
    return o[0].transpose(0, 1)  # [T, H, D]


def sdpa_gqa_works() -> bool:
    q = torch.randn(128, H, D, device=DEV, dtype=DT)
    k = torch.randn(128, HKV, D, device=DEV, dtype=DT)
    try:
        sdpa(q, k, k)
        return True
    except RuntimeError:
        return False


def _dense_step(q, k, v, do):
    return torch.autograd.grad(sdpa(q, k, v), (q, k, v), do)


def _kernel_step(q, k, v, do, cu):
    return torch.autograd.grad(sa_tri.varlen_causal_attention(q, k, v, cu, D**-0.5), (q, k, v), do)


def _kernel_add_step(q, k, v, res, rows, dres, cu):
    o = sa_tri.varlen_causal_attention(q, k, v, cu, D**-0.5)  # [N, H, D]
    out = sa_rows.add_rows(res, rows, o.view(o.shape[0], H * D))  # [T, d] permutation-free residual update
    return torch.autograd.grad(out, (q, k, v, res), dres)


def _naive_step(qf, kf, vf, res, rows, dres):
    o = sdpa(qf[rows], kf[rows], vf[rows])  # [N, H, D] from gathered copies
    padded = torch.zeros_like(res).index_copy(0, rows, o.reshape(rows.numel(), H * D))  # [T, d] zero-padded
    return torch.autograd.grad(res + padded, (qf, kf, vf, res), dres)


def attention_rows(w: Writer, T: int, ratios, peak: float, gqa_native: bool, budget_end: float):
    g = torch.Generator(device=DEV).manual_seed(T)
    nb = math.ceil(T / BLOCK)
    hk = HKV if gqa_native else H

    def rand(n, h, grad=False):
        return torch.randn(n, h, D, device=DEV, dtype=DT, generator=g).requires_grad_(grad)

    # Dense SDPA on all T rows (K/V expanded to H heads beforehand if the flash backend lacks GQA).
    dense = (rand(T, H, True), rand(T, hk, True), rand(T, hk, True))
    t_dense = bench(partial(_dense_step, *dense, rand(T, H)))
    t_dense_fwd = bench(partial(sdpa, *(x.detach() for x in dense)))
    del dense
    for r in ratios:
        if time.time() > budget_end:
            print(f"time budget reached: skipping T={T} r={r}", flush=True)
            continue
        N = min(T, max(2, round(r * nb)) * BLOCK)
        cu = [0, N]
        rows = torch.arange(N, device=DEV)  # [N] (which rows does not change the work)
        qkv = (rand(N, H, True), rand(N, HKV, True), rand(N, HKV, True))
        res = torch.randn(T, H * D, device=DEV, dtype=DT, generator=g).requires_grad_()
        dres = torch.randn(T, H * D, device=DEV, dtype=DT, generator=g)
        t_kernel = bench(partial(_kernel_step, *qkv, rand(N, H), cu))
        t_kernel_fwd = bench(partial(sa_tri.varlen_causal_attention, *(x.detach() for x in qkv), cu, D**-0.5))
        t_full = bench(partial(_kernel_add_step, *qkv, res, rows, dres, cu))
        del qkv
        full = (rand(T, H, True), rand(T, hk, True), rand(T, hk, True))
        t_naive = bench(partial(_naive_step, *full, res, rows, dres))
        del full, res, dres
        flops = 7.0 * N * N * H * D  # causal forward 2 N^2 H D; backward 2.5 times that
        r_eff = N / T  # kept rows over all rows (whole blocks kept)
        w.row(
            "sparse_attention",
            T=T, keep_ratio=r, kept_rows=N, kept_fraction=r_eff, H=H, H_kv=HKV, D=D,
            kernel_fwd_bwd_ms=t_kernel, kernel_fwd_ms=t_kernel_fwd, kernel_plus_add_ms=t_full,
            dense_sdpa_fwd_bwd_ms=t_dense, dense_sdpa_fwd_ms=t_dense_fwd, naive_gather_sdpa_scatter_ms=t_naive,
            kernel_over_r2_dense=t_kernel / (r_eff * r_eff * t_dense), target_max_r2_dense=1.3,
            naive_over_kernel_plus_add=t_naive / t_full,
            kernel_tflops=flops / t_kernel / 1e9, dense_tflops=7.0 * T * T * H * D / t_dense / 1e9,
            matmul_tflops=peak, kernel_frac_of_matmul=flops / t_kernel / 1e9 / peak,
            sdpa_gqa="native" if gqa_native else "expanded_kv",
        )  # fmt: skip


def _query_rows_step(fn, q, k, v, do, q_index, cu_q, cu_kv):
    return torch.autograd.grad(fn(q, k, v, q_index, cu_q, cu_kv, D**-0.5), (q, k, v), do)


def query_rows_rows(w: Writer, T: int, keep: float = 0.6):
    """Kept queries against all T keys (backward elimination's recompute): reference vs the Triton kernel."""
    g = torch.Generator(device=DEV).manual_seed(T)
    nb = math.ceil(T / BLOCK)
    # The first and last block are always kept (sink and local); the others at random.
    middle = torch.randperm(nb - 2, device=DEV, generator=g)[: round(keep * nb) - 2] + 1
    blocks = torch.cat([middle.new_tensor([0, nb - 1]), middle]).sort().values  # [nk]
    q_index = (blocks[:, None] * BLOCK + torch.arange(BLOCK, device=DEV)).flatten()  # [Nq] sorted positions
    q_index = q_index[q_index < T]
    Nq = q_index.numel()
    cu_q, cu_kv = [0, Nq], [0, T]
    q, do = (torch.randn(Nq, H, D, device=DEV, dtype=DT, generator=g) for _ in range(2))  # [Nq, H, D]
    k, v = (torch.randn(T, HKV, D, device=DEV, dtype=DT, generator=g) for _ in range(2))  # [T, H_kv, D]
    q, k, v = (x.requires_grad_() for x in (q, k, v))
    args = (q, k, v, do, q_index, cu_q, cu_kv)
    fwd_args = (q.detach(), k.detach(), v.detach(), q_index, cu_q, cu_kv, D**-0.5)
    t_ref = bench(partial(_query_rows_step, sa_ref.query_rows_attention, *args))
    t_tri = bench(partial(_query_rows_step, sa_query.query_rows_attention, *args))
    t_ref_fwd = bench(partial(sa_ref.query_rows_attention, *fwd_args))
    t_tri_fwd = bench(partial(sa_query.query_rows_attention, *fwd_args))
    runs = int((q_index[1:] != q_index[:-1] + 1).sum()) + 1
    # FLOPs of the visible (causal) scores: each query sees pos + 1 keys; forward 4 D per score and head,
    # backward 2.5 times that.
    flops = 3.5 * 4.0 * D * H * float((q_index + 1).sum())
    w.row(
        "query_rows", T=T, keep_ratio=keep, kept_rows=Nq, runs=runs, H=H, H_kv=HKV, D=D,
        reference_fwd_bwd_ms=t_ref, triton_fwd_bwd_ms=t_tri, reference_fwd_ms=t_ref_fwd, triton_fwd_ms=t_tri_fwd,
        speedup_fwd_bwd=t_ref / t_tri, speedup_fwd=t_ref_fwd / t_tri_fwd, triton_tflops=flops / t_tri / 1e9,
    )  # fmt: skip


def movement_rows(w: Writer, T: int, r: float):
    """Token movement only: what the attention path does around the kernel, without the attention."""
    N = min(T, max(2, round(r * math.ceil(T / BLOCK))) * BLOCK)
    rows = torch.arange(0, T, device=DEV)[
        torch.randperm(T, device=DEV)[:N].sort().values
    ]  # [N] scattered rows
    res = torch.randn(T, DM, device=DEV, dtype=DT).requires_grad_()
    dres = torch.randn(T, DM, device=DEV, dtype=DT)
    qf, kf, vf = (torch.randn(T, h, D, device=DEV, dtype=DT).requires_grad_() for h in (H, HKV, HKV))
    x = torch.randn(T, DM, device=DEV, dtype=DT).requires_grad_()
    upd = torch.randn(N, DM, device=DEV, dtype=DT).requires_grad_()

    dk_g = torch.randn(N, HKV, D, device=DEV, dtype=DT)
    dx_g = torch.randn(N, DM, device=DEV, dtype=DT)

    def naive():  # gather q/k/v rows, pad the (stand-in) N-row output back to T rows with zeros, add
        qg, kg, vg = qf[rows], kf[rows], vf[rows]
        padded = torch.zeros(T, DM, device=DEV, dtype=DT).index_copy(0, rows, qg.reshape(N, H * D))
        outs = (res + padded, kg, vg)
        return torch.autograd.grad(outs, (qf, kf, vf, res), (dres, dk_g, dk_g))

    def fused():  # the layer gathers x[rows] once before the projections, then one fused row add
        xk = x[rows]
        out = sa_rows.add_rows(res, rows, upd)
        return torch.autograd.grad((out, xk), (x, res, upd), (dres, dx_g))

    buf = torch.randn(T, DM, device=DEV, dtype=DT)

    def inplace():  # the in-place add alone (forward only: what the kernel costs when the buffer is owned)
        sa_rows.add_rows_(buf, rows, upd.detach())

    t_naive, t_fused, t_inplace = bench(naive), bench(fused), bench(inplace)
    w.row(
        "token_movement", T=T, keep_ratio=r, kept_rows=N, d=DM,
        naive_gather_pad_add_fwd_bwd_ms=t_naive, fused_gather_x_add_rows_fwd_bwd_ms=t_fused,
        add_rows_inplace_fwd_ms=t_inplace, speedup=t_naive / t_fused, target_speedup_at_64k=10.0,
    )  # fmt: skip


def block_score_rows(w: Writer, T: int, with_reference: bool):
    q = torch.randn(T, H, D, device=DEV, dtype=DT)
    k = torch.randn(T, HKV, D, device=DEV, dtype=DT)
    v = torch.randn(T, HKV, D, device=DEV, dtype=DT)
    t_tri = bench(lambda: bs_tri.block_score_map(q, k, BLOCK))
    ke, ve = (k, v) if SDPA_GQA else (k.repeat_interleave(H // HKV, 1), v.repeat_interleave(H // HKV, 1))
    t_sdpa = bench(lambda: sdpa(q, ke, ve))
    t_ref = (
        bench(lambda: bs_ref.block_score_map(q, k, BLOCK), min_reps=1, max_reps=2, warmup=1)
        if with_reference
        else float("nan")
    )
    flops = 2.0 * T * T * H * D / 2  # q.k over the causal half, all heads
    w.row(
        "block_scores", T=T, H=H, H_kv=HKV, D=D, block=BLOCK, triton_ms=t_tri, sdpa_fwd_ms=t_sdpa,
        ratio_to_sdpa_fwd=t_tri / t_sdpa, target_max_ratio=0.25, reference_ms=t_ref,
        triton_tflops=flops / t_tri / 1e9, flop_floor_ratio=0.5,
    )  # fmt: skip


def hf_loss(hidden, weight, labels):
    """What HF computes: full logits, upcast to fp32, mean cross-entropy (ForCausalLMLoss with shift_labels)."""
    logits = hidden @ weight.t()  # [N, V] bf16
    try:
        from transformers.loss.loss_utils import ForCausalLMLoss

        return ForCausalLMLoss(logits[None], None, VOCAB, shift_labels=labels[None])
    except (ImportError, TypeError):
        return F.cross_entropy(logits.float(), labels, ignore_index=-100)


def ce_rows(w: Writer, N: int):
    hidden0 = torch.randn(N, DM, device=DEV, dtype=DT)
    weight = (torch.randn(VOCAB, DM, device=DEV) * DM**-0.5).to(DT)  # frozen LM head (LoRA)
    labels = torch.randint(0, VOCAB, (N,), device=DEV)
    labels[-1] = -100
    methods = {
        "hf": lambda h: hf_loss(h, weight, labels),
        "reference": lambda h: ce_ref.segmented_cross_entropy(h, weight, labels, 2048),
        "triton": lambda h: ce_tri.segmented_cross_entropy(h, weight, labels, 2048),
    }
    peaks, times, losses = {}, {}, {}
    for name, fn in methods.items():
        hidden = hidden0.clone().requires_grad_()
        try:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            loss = fn(hidden)
            loss.backward()
            torch.cuda.synchronize()
            peaks[name] = (torch.cuda.max_memory_allocated() - base) / 2**30
            losses[name] = loss.item()
            del loss
            hidden.grad = None
            times[name] = bench(
                lambda fn=fn, hidden=hidden: torch.autograd.grad(fn(hidden), hidden), min_reps=3, max_reps=5
            )
        except torch.OutOfMemoryError:
            peaks[name], times[name], losses[name] = float("nan"), float("nan"), float("nan")
        del hidden
    for name in methods:
        w.row(
            "segmented_ce", N=N, d=DM, V=VOCAB, chunk=2048, method=name, peak_extra_gib=peaks[name],
            fwd_bwd_ms=times[name], loss=losses[name], peak_frac_of_hf=peaks[name] / peaks["hf"],
            time_over_hf=times[name] / times["hf"], target_max_peak_frac=0.10,
        )  # fmt: skip


SDPA_GQA = True


def main():
    global SDPA_GQA
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--commit", default=os.environ.get("LEMO_COMMIT", "unknown"))
    ap.add_argument("--budget-s", type=float, default=300.0, help="stop starting new measurements after this")
    ap.add_argument("--lengths", default="16384,32768,65536")
    ap.add_argument("--only", default="", help="comma-separated sections to run (default: all)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t_end = time.time() + args.budget_s
    gpu = torch.cuda.get_device_name()
    meta = dict(gpu=gpu, torch=torch.__version__, triton=triton.__version__, commit=args.commit,
                command="PYTHONPATH=src python " + " ".join(sys.argv))  # fmt: skip
    w = Writer(args.out, meta)
    lengths = [int(x) for x in args.lengths.split(",")]
    torch.manual_seed(0)
    peak = matmul_tflops()
    SDPA_GQA = sdpa_gqa_works()
    print(f"{gpu}: dense bf16 matmul {peak:.0f} TFLOP/s; SDPA flash GQA native: {SDPA_GQA}", flush=True)
    sections = [
        (
            "sparse_attention",
            lambda: [attention_rows(w, T, (1.0, 0.7, 0.4, 0.2), peak, SDPA_GQA, t_end) for T in lengths],
        ),
        ("query_rows", lambda: [query_rows_rows(w, T) for T in (16384, 32768)]),
        ("block_scores", lambda: [block_score_rows(w, T, with_reference=T <= 16384) for T in lengths]),
        ("segmented_ce", lambda: [ce_rows(w, N) for N in (16384, 32768)]),
        ("token_movement", lambda: [movement_rows(w, T, r) for T in lengths for r in (0.4,)]),
    ]
    only = {x for x in args.only.split(",") if x}
    for name, run in sections:
        if only and name not in only:
            continue
        if time.time() > t_end:
            print(f"time budget reached: skipping {name}", flush=True)
            continue
        try:
            run()
        except Exception as e:  # keep the other sections' numbers
            print(f"{name} FAILED: {type(e).__name__}: {e}", flush=True)
        torch.cuda.empty_cache()
    for prefix, tuned in (("", sa_tri._TUNED), ("query_", sa_query._TUNED)):
        for kname, tuner in tuned.items():
            print("autotuned", prefix + kname, {str(k): str(c) for k, c in tuner.cache.items()}, flush=True)


if __name__ == "__main__":
    main()
