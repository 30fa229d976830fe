"""One measured training step and the searches built on it: a row per (config, T), and the longest T that fits."""

from __future__ import annotations

import argparse
import contextlib
import gc
import re
import statistics
import time
from collections.abc import Iterator
from typing import Any

import torch

from lemo.bench.configs import PREDICTORS, configure

MATMUL_RATE: list[float] = []  # the card's bf16 matmul rate, measured once per process (run.main fills it)


def model_tflop(model: Any, T: int) -> float:
    """Dense-equivalent training FLOPs of one step at length T, in TFLOP: 6*N*T + 6*L*d*T^2.

    N counts every weight that multiplies activations (all but the input embedding table); the second term is
    causal attention (QK^T and PV, 2*T^2*d each forward, halved by the mask, tripled for backward). This is the
    usual model-FLOPs convention: work lemo skips, and weight gradients LoRA does not compute, still count, so a
    faster method shows a higher achieved rate.
    """
    cfg = model.config
    emb = model.get_input_embeddings().weight.numel()
    n = sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name) - emb
    return (6 * n * T + 6 * cfg.num_hidden_layers * cfg.hidden_size * T * T) / 1e12


def matmul_rate(device: torch.device) -> float | None:
    """The card's measured dense bf16 matmul rate in TFLOP/s (8192^3, median of 20), the 100% mark."""
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    times = []
    for _ in range(20):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return 2 * 8192**3 / statistics.median(times) / 1e12


def train_labels(ids: torch.Tensor, completion: float) -> torch.Tensor:
    """Labels of a benchmark row: every position (plain text), or only the last `completion` fraction of it
    (prompt/completion data, where only the answer is supervised). Every config of a run gets the same."""
    if completion <= 0:
        return ids
    labels = torch.full_like(ids, -100)  # [1, T]
    start = ids.shape[1] - max(1, round(completion * ids.shape[1]))
    labels[:, start:] = ids[:, start:]
    return labels


def few_layer_indices(model: Any) -> list[int]:
    """The decoder layers `few_layers` runs: the first, the first sparse one and, under lemo, the last, whose
    trimmed form (lemo.sparsity.trimmed) runs kernels of its own (the kept-queries attention); sorted."""
    from lemo.integrations.transformers.patch import causal_lm, is_applied, sparsity_state

    if not is_applied(model):
        return [0]
    n = causal_lm(model).config.num_hidden_layers
    return sorted({0, *sparsity_state(model).layers[:1], n - 1})


@contextlib.contextmanager
def few_layers(model: Any) -> Iterator[None]:
    """Run the model through a few of its decoder layers only (`few_layer_indices`), for a cheap warm-up.

    At long T one full step can fill a device call, and the first one pays for compiling and autotuning every
    kernel at the step's shapes (lemo's Triton attention tunes once per length class). A dense layer, a sparse
    one and the (trimmed) last layer see every shape of the step, so a warm-up through them does that work at a
    fraction of a step's time.
    """
    from lemo.integrations.transformers.archs import spec_for
    from lemo.integrations.transformers.patch import causal_lm

    base = causal_lm(model)
    spec = spec_for(base.config.model_type)
    decoder = getattr(base, spec.decoder)
    layers = getattr(decoder, spec.layers)
    keep = few_layer_indices(model)
    n = base.config.num_hidden_layers
    setattr(decoder, spec.layers, torch.nn.ModuleList([layers[i] for i in keep]))
    base.config.num_hidden_layers = len(keep)  # HF decoders loop over layers[: num_hidden_layers]
    try:
        yield
    finally:
        setattr(decoder, spec.layers, layers)
        base.config.num_hidden_layers = n


def reserve_host_pool(model: Any, device: torch.device) -> None:
    """After a warm-up through `few_layers`: grow lemo's host offload pool to what a whole step stores, so the
    timed step reuses pinned buffers as every step after a training run's first does, instead of pinning about
    a GiB of fresh host memory per layer at 128K inside the timed step (`HostOffloader.reserve`). The warm-up
    stored the inputs of the layers it ran (`few_layer_indices`): each of those layers gets its own size, every
    other dense layer layer 0's, every other sparse layer the first sparse layer's. Nothing happens without
    offload; a host too small for the whole pool leaves it to grow in the step, as before."""
    from lemo.integrations.transformers.patch import causal_lm, is_applied, sparsity_state

    state = sparsity_state(model) if is_applied(model) else None
    offloader = getattr(state, "offloader", None)
    if offloader is None or not offloader.stats.step_sizes:
        return
    ran = few_layer_indices(model)
    if len(offloader.stats.step_sizes) != len(ran):
        return  # not a few-layer warm-up's sizes
    size = dict(zip(ran, offloader.stats.step_sizes))  # layer -> bytes it stored, in the order it ran
    sparse_layers = set(state.layers)
    dense = size[0]
    sparse = size[state.layers[0]] if state.layers else dense
    n = causal_lm(model).config.num_hidden_layers
    try:
        offloader.reserve([size.get(i, sparse if i in sparse_layers else dense) for i in range(n)], device)
    except RuntimeError as err:
        print(f"host pool not reserved ({str(err).splitlines()[0]}): the timed step grows it", flush=True)


def run_one(
    model: Any,
    T: int,
    steps: int,
    warmup: int,
    device: torch.device,
    completion: float = 0.0,
    warmup_layers: str = "all",
    world: Any = None,
) -> dict:
    from lemo.bench.sharded import reducer

    # Under torchrun (`world`, a lemo.train.distributed.Dist): the slowest rank's time, the largest rank's
    # memory, and the job's tokens, since every rank trains its own row.
    largest = reducer(world, device)
    ranks = world.world_size if world is not None else 1
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (1, T), device=device)  # [1, T]: random tokens, speed ignores their values
    labels = train_labels(ids, completion)  # [1, T]
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        cheap = i < warmup and warmup_layers == "few"
        with few_layers(model) if cheap else contextlib.nullcontext():
            loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cheap:
            reserve_host_pool(model, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    row = {"median_step_s": largest(statistics.median(times)), "loss": float(loss.detach())}
    if PREDICTORS:
        timing = PREDICTORS[0].timings()  # accumulated over warm-up and timed steps
        row["predictor_ms_per_step"] = 1000 * timing["seconds"] / (warmup + steps)
        row["predictor_share"] = row["predictor_ms_per_step"] / 1000 / row["median_step_s"]
        row["predictor_param_mib"] = timing["param_bytes"] / 2**20
    row["tokens_per_s"] = ranks * T / row["median_step_s"]
    row["model_tflop_per_step"] = ranks * model_tflop(model, T)
    row["achieved_tflop_per_s"] = row["model_tflop_per_step"] / row["median_step_s"]
    if MATMUL_RATE:
        row["matmul_tflop_per_s"] = MATMUL_RATE[0]
        row["fraction_of_matmul"] = row["achieved_tflop_per_s"] / MATMUL_RATE[0]
    if device.type == "cuda":
        row["peak_alloc_gib"] = largest(torch.cuda.max_memory_allocated() / 2**30)
        row["peak_reserved_gib"] = largest(torch.cuda.max_memory_reserved() / 2**30)
    offloader = _offloader(model)
    if offloader is not None:
        row["host_peak_gib"] = offloader.stats.peak_bytes / 2**30
        row["host_pool_gib"] = offloader.stats.pool_bytes / 2**30
    return row


def _offloader(model: Any) -> Any:
    from lemo.integrations.transformers.patch import is_applied, sparsity_state

    return sparsity_state(model).offloader if is_applied(model) else None


def probe(model: Any, name: str, T: int, args: argparse.Namespace, device: torch.device) -> dict:
    """One configured run at length T; OOM is a result. Frees everything it allocated before returning."""
    world = getattr(args, "world", None)
    configure(model, name, args.keep_ratio, args.backend, args.tile_tokens, sharded=world is not None)
    try:
        measured = run_one(
            model, T, args.steps, args.warmup, device, args.completion, args.warmup_layers, world
        )
        row = {**measured, "status": "ok"}
    except torch.OutOfMemoryError as err:
        if world is not None:
            # The other ranks wait in a collective of this step: a skipped row would leave them hanging.
            raise RuntimeError(
                f"{name} ran out of GPU memory at T={T} on rank {world.rank}; under torchrun an "
                "out-of-memory row cannot be recorded and skipped. Shorten --lengths, or measure the longest "
                "T in one process (--mode longest)."
            ) from None
        allocated = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
        row = {"status": "OOM", "oom_detail": oom_detail(str(err), allocated)}
    except RuntimeError as err:  # the offloader's refusal: the host, not the GPU, ran out of (pinned) memory
        if "pinned host memory" not in str(err):
            raise
        row = {"status": "host-OOM"}
    model.zero_grad(set_to_none=True)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def oom_detail(message: str, allocated_gib: float | None) -> str:
    """'@61.2+4.9GiB': what was allocated when the step failed and the request that failed (from CUDA's message),
    so a longest-T probe that misses its plan says by how much; '' off a GPU."""
    if allocated_gib is None:
        return ""
    asked = re.search(r"Tried to allocate ([0-9.]+) (GiB|MiB)", message)
    extra = "" if asked is None else f"+{float(asked[1]) / (1 if asked[2] == 'GiB' else 1024):.1f}"
    return f"@{allocated_gib:.1f}{extra}GiB"


def longest_length(model: Any, name: str, args: argparse.Namespace, device: torch.device) -> dict:
    """Largest T (a multiple of --granularity) whose training step fits: doubling, then bisection."""
    g = args.granularity
    ok_T, ok_row, oom_T, probes = 0, {}, 0, []
    # The economical search probes the lengths a plan named; otherwise doubling from --search-start. Either way,
    # shortest first until the first failure.
    if args.probe_lengths:
        lengths = sorted(args.probe_lengths)
    else:
        lengths = [args.search_start << i for i in range(64) if args.search_start << i <= args.search_max]
    for length in lengths:
        row = probe(model, name, length, args, device)
        probes.append(f"{length}:{row['status']}{row.get('oom_detail', '')}")
        print(f"  {name} T={length} {probes[-1]} {row.get('peak_alloc_gib') or 0:.1f} GiB", flush=True)
        if row["status"] != "ok":
            oom_T = length
            break
        ok_T, ok_row = length, row
    if args.probe_lengths:
        return _longest_row(ok_T, oom_T, ok_row, probes)
    lo, hi = ok_T, oom_T
    while hi and hi - lo > g:  # bisection on multiples of g
        mid = (lo + hi) // 2 // g * g
        if mid <= lo:
            break
        row = probe(model, name, mid, args, device)
        probes.append(f"{mid}:{row['status']}{row.get('oom_detail', '')}")
        print(f"  {name} T={mid} {probes[-1]} {row.get('peak_alloc_gib') or 0:.1f} GiB", flush=True)
        if row["status"] == "ok":
            lo, ok_row = mid, row
        else:
            hi = mid
    return _longest_row(lo, hi, ok_row, probes)


def _longest_row(ok_T: int, oom_T: int, ok_row: dict, probes: list[str]) -> dict:
    keys = ("peak_alloc_gib", "peak_reserved_gib", "median_step_s", "host_peak_gib")
    out = {"longest_ok_T": ok_T, "first_oom_T": oom_T or "", "probes": " ".join(probes)}
    return {**out, **{k: ok_row.get(k) for k in keys}}
