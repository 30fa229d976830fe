"""End-to-end training-step benchmark: peak memory, step time and longest trainable T of LoRA fine-tuning.

Configurations (design.md section 5; `CONFIGS` below), all HF + PEFT LoRA r=8, alpha=16 on q/k/v/o, bf16, batch 1:
    lora          no gradient checkpointing, the model's own loss (SDPA attention)
    lora+gc       HF gradient checkpointing
    exact         lora+gc plus the segmented loss: the strongest exact stack from public parts
    longlora      lora with LongLoRA's shifted sparse attention (group T/4, half the heads shifted)
    lemo*         lemo on top of lora (no +gc) or of exact (+gc); +sgc checkpoints only the sparse layers
    abl-*         lemo-shared+gc with one part switched off (ablation)
Llama shapes use random-init weights: speed and memory do not depend on weight values, and keep ratios are
fixed, so this measures the system, not the model. "smollm2" uses the real embedded model. OOM is a result.

    python benchmarks/e2e/bench.py --shape llama3-8b --lengths 8192 32768 --configs lora exact lemo-shared+gc \
        --keep-ratio 0.6 --backend auto --out benchmarks/results/e2e_llama3_8b.csv
    python benchmarks/e2e/bench.py --mode longest --cap-gib 74.5 --shape llama3-8b --configs exact lemo-shared+gc
(also `lemo bench ...`). --mode longest searches the largest T under the cap (per-process memory fraction).
"""

from __future__ import annotations

import argparse
import csv
import gc
import importlib.metadata as md
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

SHAPES = {
    # name: (hidden, intermediate, layers, heads, kv_heads, vocab); "smollm2" loads the real embedded model instead
    "llama2-7b": (4096, 11008, 32, 32, 32, 32000),
    "llama3-8b": (4096, 14336, 32, 32, 8, 128256),
    "tiny": (256, 512, 4, 4, 2, 1024),
    "smollm2": None,
}
TILE_ALL = {"tile_tokens": "tile", "tile_attention": True}
SHARED = {"shared_selection": True, "loss_tokens": "kept"}  # the quality-holding setting of docs/quality.md
DEFAULT = {
    **SHARED,
    "label_priority": True,
    "random_fraction": 1.0,
}  # lemo's default selection (with mlp tokens)
# name: (checkpointing: None | "all" | "sparse", segmented loss, token elimination, MLP mode, extra options).
# "sparse" checkpoints only the sparse layers (they store their kept rows); the dense half stores activations.
# Extra options: SparsityConfig fields, plus "backend" (overrides --backend) and "s2" (LongLoRA's attention).
CONFIGS = {
    "lora": (None, False, False, None, {}),
    "lora+gc": ("all", False, False, None, {}),
    "exact": ("all", True, False, None, {}),
    "longlora": (None, False, False, None, {"s2": True}),
    "longlora+gc": ("all", False, False, None, {"s2": True}),
    "lemo": (None, True, True, "dense", {}),
    "lemo+gc": ("all", True, True, "dense", {}),
    "lemo-tokens": (None, True, True, "tokens", {}),
    "lemo-tokens+gc": ("all", True, True, "tokens", {}),
    "lemo-shared": (None, True, True, "tokens", SHARED),
    "lemo-shared+gc": ("all", True, True, "tokens", SHARED),
    "lemo-shared+sgc": ("sparse", True, True, "tokens", SHARED),
    # ablation of lemo-shared+gc: one part off at a time (elimination off is `exact`)
    "abl-mlp-dense+gc": ("all", True, True, "dense", SHARED),
    "abl-loss-all+gc": ("all", True, True, "tokens", {"shared_selection": True}),
    "abl-hf-loss+gc": ("all", False, True, "tokens", {"shared_selection": True}),
    "abl-reference+gc": ("all", True, True, "tokens", {**SHARED, "backend": "reference"}),
    "abl-copy-residual+gc": ("all", True, True, "tokens", {**SHARED, "inplace_residual": False}),
    # capability-holding selections (docs/capability.md): labelled blocks first, then random or mixed context
    "lemo-random+gc": ("all", True, True, "tokens", DEFAULT),
    "lemo-mix+gc": ("all", True, True, "tokens", {**SHARED, "label_priority": True, "random_fraction": 0.5}),
    "lemo-prio+gc": ("all", True, True, "tokens", {**SHARED, "label_priority": True}),
    # memory for the longest T (docs/longest.md): checkpointed inputs in pinned host memory, MLP in row tiles;
    # "exact+offload*" is the same code with elimination off, the Unsloth/ALST-style exact stack
    "exact+offload": ("all", True, False, None, {"offload": "cpu"}),
    "exact+offload+tiled": ("all", True, False, None, {"offload": "cpu", "tile_tokens": "tile"}),
    "lemo+offload": ("all", True, True, "tokens", {**DEFAULT, "offload": "cpu"}),
    "lemo+offload+tiled": ("all", True, True, "tokens", {**DEFAULT, "offload": "cpu", "tile_tokens": "tile"}),
    # +tiled-attn: the whole layer but the attention core in row tiles (tile_attention)
    "exact+offload+tiled-attn": ("all", True, False, None, {"offload": "cpu", **TILE_ALL}),
    "lemo+offload+tiled-attn": ("all", True, True, "tokens", {**DEFAULT, "offload": "cpu", **TILE_ALL}),
    # learned predictors instead of the oracle (untrained, artifact shape: time and memory do not depend on values)
    "lemo-pred+gc": ("all", True, True, "dense", {"scorer": "predictor"}),
    "lemo-pred-shared+gc": ("all", True, True, "tokens", {"scorer": "predictor", **SHARED}),
}
_PREDICTORS: list = []  # the predictor set of the current config, for its timings
_MATMUL_RATE: list[float] = []  # measured once per process
# Provenance carried by every row of every CSV this script writes.
ENV_FIELDS = ["gpu", "torch", "cuda", "transformers", "peft", "triton", "commit", "timestamp", "command"]
FIELDS = [
    "config",
    "shape",
    "seq_len",
    "keep_ratio",
    "mlp",
    "backend",
    "status",
    "peak_alloc_gib",
    "peak_reserved_gib",
    "median_step_s",
    "tokens_per_s",
    "predictor_ms_per_step",
    "predictor_share",
    "predictor_param_mib",
    "loss",
    "model_tflop_per_step",
    "achieved_tflop_per_s",
    "matmul_tflop_per_s",
    "fraction_of_matmul",
    "completion",
    "host_peak_gib",
    "host_pool_gib",
    "tile_tokens",
    "cap_gib",
    *ENV_FIELDS,
]


def build_model(shape: str, device: torch.device, max_len: int):
    from peft import LoraConfig, get_peft_model

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if shape == "smollm2":
        from lemo.assets import smollm2_dir
        from lemo.integrations.transformers.loading import load_model

        model, _ = load_model(smollm2_dir(), dtype=dtype, device=device)
        model.config.use_cache = False
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        hidden, inter, layers, heads, kv, vocab = SHAPES[shape]
        cfg = LlamaConfig(
            hidden_size=hidden,
            intermediate_size=inter,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            vocab_size=vocab,
            max_position_embeddings=max(max_len, 4096),
            attn_implementation="sdpa",
            use_cache=False,
        )
        torch.manual_seed(0)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with device:  # initialise on the GPU directly: 7B random weights in seconds, no host copy
                model = LlamaForCausalLM(cfg)
        finally:
            torch.set_default_dtype(previous)
    lora = LoraConfig(
        r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0
    )
    return get_peft_model(model, lora).train()


def _decoder_layers(model):
    return model.get_base_model().model.layers


def configure(model, name: str, keep_ratio: float, backend: str, tile: int = 8192) -> None:
    """Put `model` in configuration `name`, undoing whatever the previous configuration did."""
    import lemo
    from lemo.integrations.transformers import (
        disable_shifted_sparse_attention,
        enable_shifted_sparse_attention,
    )
    from lemo.integrations.transformers.loading import enable_gradient_checkpointing

    checkpointing, segmented, sparse, mlp, extra = CONFIGS[name]
    extra = dict(extra)
    backend = extra.pop("backend", backend)
    s2 = extra.pop("s2", False)
    if extra.get("tile_tokens") == "tile":
        extra["tile_tokens"] = tile
    lemo.remove(model)
    disable_shifted_sparse_attention(model)
    if checkpointing:
        enable_gradient_checkpointing(model)
    else:
        model.gradient_checkpointing_disable()
    if s2:
        enable_shifted_sparse_attention(model, group_fraction=0.25)
    _PREDICTORS.clear()
    if sparse:
        # Every config names its changes from the paper's setting, so new library defaults leave the rows' meaning.
        cfg = lemo.SparsityConfig.paper(
            keep_ratio=keep_ratio,
            sparse_layers="auto",
            mlp=mlp,
            backend=backend,
            segmented_loss=segmented,
            **extra,
        )
        predictors = None
        if cfg.scorer == "predictor":
            from lemo.predictor import PredictorConfig, PredictorSet

            mc = model.config
            head = mc.hidden_size // mc.num_attention_heads
            pcfg = PredictorConfig(d_model=mc.hidden_size, slice_dim=head, block_size=cfg.block_size)
            layers = cfg.resolve_layers(mc.num_hidden_layers)
            param = next(model.parameters())
            predictors = PredictorSet(pcfg, layers).to(param.device, param.dtype)
            _PREDICTORS.append(predictors)
        lemo.apply(model, cfg, predictors=predictors)
        if checkpointing == "sparse":
            sparse_set = set(cfg.resolve_layers(model.config.num_hidden_layers))
            for i, layer in enumerate(_decoder_layers(model)):
                layer.gradient_checkpointing = i in sparse_set
    elif segmented:
        cfg = lemo.SparsityConfig(sparse_layers="none", segmented_loss=True, backend=backend, **extra)
        lemo.apply(model, cfg)


def model_tflop(model, T: int) -> float:
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


def run_one(model, T: int, steps: int, warmup: int, device: torch.device, completion: float = 0.0) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (1, T), device=device)
    labels = train_labels(ids, completion)  # [1, T]
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    row = {"median_step_s": statistics.median(times), "loss": float(loss.detach())}
    if _PREDICTORS:
        timing = _PREDICTORS[0].timings()  # accumulated over warm-up and timed steps
        row["predictor_ms_per_step"] = 1000 * timing["seconds"] / (warmup + steps)
        row["predictor_share"] = row["predictor_ms_per_step"] / 1000 / row["median_step_s"]
        row["predictor_param_mib"] = timing["param_bytes"] / 2**20
    row["tokens_per_s"] = T / row["median_step_s"]
    row["model_tflop_per_step"] = model_tflop(model, T)
    row["achieved_tflop_per_s"] = row["model_tflop_per_step"] / row["median_step_s"]
    if _MATMUL_RATE:
        row["matmul_tflop_per_s"] = _MATMUL_RATE[0]
        row["fraction_of_matmul"] = row["achieved_tflop_per_s"] / _MATMUL_RATE[0]
    if device.type == "cuda":
        row["peak_alloc_gib"] = torch.cuda.max_memory_allocated() / 2**30
        row["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    offloader = _offloader(model)
    if offloader is not None:
        row["host_peak_gib"] = offloader.stats.peak_bytes / 2**30
        row["host_pool_gib"] = offloader.stats.pool_bytes / 2**30
    return row


def _offloader(model):
    from lemo.integrations.transformers.patch import is_applied, sparsity_state

    return sparsity_state(model).offloader if is_applied(model) else None


def environment() -> dict:
    def ver(pkg: str) -> str:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "none"

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {
        "gpu": gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda or "none",
        "transformers": ver("transformers"),
        "peft": ver("peft"),
        "triton": ver("triton"),
        "commit": os.environ.get("LEMO_COMMIT", "unknown"),
    }


LONGEST_FIELDS = [
    "config",
    "shape",
    "keep_ratio",
    "cap_gib",
    "longest_ok_T",
    "first_oom_T",
    "peak_alloc_gib",
    "peak_reserved_gib",
    "median_step_s",
    "host_peak_gib",
    "probes",
    *ENV_FIELDS,
]


def _probe(model, name: str, T: int, args, device: torch.device) -> dict:
    """One configured run at length T; OOM is a result. Frees everything it allocated before returning."""
    configure(model, name, args.keep_ratio, args.backend, args.tile_tokens)
    try:
        row = {**run_one(model, T, args.steps, args.warmup, device, args.completion), "status": "ok"}
    except torch.OutOfMemoryError:
        row = {"status": "OOM"}
    except RuntimeError as err:  # the offloader's refusal: the host, not the GPU, ran out of (pinned) memory
        if "pinned host memory" not in str(err):
            raise
        row = {"status": "host-OOM"}
    model.zero_grad(set_to_none=True)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def longest_length(model, name: str, args, device: torch.device) -> dict:
    """Largest T (a multiple of --granularity) whose training step fits: doubling, then bisection."""
    g = args.granularity
    ok_T, ok_row, oom_T, probes = 0, {}, 0, []
    if args.probe_lengths:  # economical search: the lengths a plan named, shortest first, until one fails
        for length in sorted(args.probe_lengths):
            row = _probe(model, name, length, args, device)
            probes.append(f"{length}:{row['status']}")
            print(f"  {name} T={length} {row['status']} {row.get('peak_alloc_gib', 0):.1f} GiB", flush=True)
            if row["status"] != "ok":
                oom_T = length
                break
            ok_T, ok_row = length, row
        return _longest_row(ok_T, oom_T, ok_row, probes)
    length = args.search_start
    while length <= args.search_max:  # doubling until the first OOM
        row = _probe(model, name, length, args, device)
        probes.append(f"{length}:{row['status']}")
        print(f"  {name} T={length} {row['status']} {row.get('peak_alloc_gib', 0):.1f} GiB", flush=True)
        if row["status"] != "ok":
            oom_T = length
            break
        ok_T, ok_row = length, row
        length *= 2
    lo, hi = ok_T, oom_T
    while hi and hi - lo > g:  # bisection on multiples of g
        mid = (lo + hi) // 2 // g * g
        if mid <= lo:
            break
        row = _probe(model, name, mid, args, device)
        probes.append(f"{mid}:{row['status']}")
        print(f"  {name} T={mid} {row['status']} {row.get('peak_alloc_gib', 0):.1f} GiB", flush=True)
        if row["status"] == "ok":
            lo, ok_row = mid, row
        else:
            hi = mid
    return _longest_row(lo, hi, ok_row, probes)


def _longest_row(ok_T: int, oom_T: int, ok_row: dict, probes: list[str]) -> dict:
    keys = ("peak_alloc_gib", "peak_reserved_gib", "median_step_s", "host_peak_gib")
    out = {"longest_ok_T": ok_T, "first_oom_T": oom_T or "", "probes": " ".join(probes)}
    return {**out, **{k: ok_row.get(k) for k in keys}}


def _append(path: Path, fields: list[str], row: dict) -> None:
    # One row at a time: a run cut short by a time limit keeps everything measured so far.
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def _show(row: dict, keys: tuple[str, ...]) -> None:
    print(
        "  ".join(
            f"{k}={row[k]:.3f}" if isinstance(row.get(k), float) else f"{k}={row.get(k)}" for k in keys
        ),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama2-7b")
    ap.add_argument("--lengths", type=int, nargs="+", default=[8192, 16384])
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["lora", "lemo"])
    ap.add_argument(
        "--mode",
        choices=["steps", "longest"],
        default="steps",
        help="steps: one row per (config, T); longest: search the largest T that fits under --cap-gib",
    )
    ap.add_argument(
        "--cap-gib",
        type=float,
        default=None,
        help="GPU memory cap in GiB (--mode longest default: 80 GB = 74.5 GiB; steps mode: none unless given)",
    )
    ap.add_argument("--granularity", type=int, default=8192, help="longest-T search resolution (tokens)")
    ap.add_argument("--search-start", type=int, default=8192)
    ap.add_argument("--search-max", type=int, default=1 << 20)
    ap.add_argument(
        "--budget-s", type=float, default=0, help="start no new run after this many seconds (0: none)"
    )
    ap.add_argument("--keep-ratio", type=float, default=0.4)
    ap.add_argument("--backend", default="reference", choices=["auto", "reference", "triton"])
    ap.add_argument("--tile-tokens", type=int, default=8192, help="MLP tile rows of the +tiled configs")
    ap.add_argument(
        "--probe-lengths",
        type=int,
        nargs="+",
        default=[],
        help="--mode longest: probe exactly these T (e.g. a plan's prediction and one step above) instead of "
        "doubling and bisecting",
    )
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument(
        "--completion",
        type=float,
        default=0.0,
        help="supervise only the last fraction of each row, as prompt/completion data does (0: every position)",
    )
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/e2e.csv"))
    args = ap.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    env = environment()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    if args.cap_gib is None and args.mode == "longest":
        args.cap_gib = 80.0 * 1e9 / 2**30
    if device.type == "cuda" and args.cap_gib is not None:
        total = torch.cuda.get_device_properties(device).total_memory
        # The cap holds on a larger card too: the caching allocator refuses to grow past this fraction.
        torch.cuda.set_per_process_memory_fraction(
            min(1.0, args.cap_gib * 2**30 / total), torch.cuda.current_device()
        )
    rate = matmul_rate(device)
    if rate:
        _MATMUL_RATE.append(rate)
        print(f"measured bf16 matmul rate: {rate:.0f} TFLOP/s", flush=True)
    longest = args.search_max if args.mode == "longest" else 0
    model = build_model(args.shape, device, max([*args.lengths, longest]))
    start = time.perf_counter()
    lengths = sorted(args.lengths) if args.mode == "steps" else [0]
    out_of_memory: set[str] = set()  # "until out of memory": a config that OOMed is not tried at longer T
    for T in lengths:
        for name in args.configs:
            if name in out_of_memory:
                continue
            if args.budget_s and time.perf_counter() - start > args.budget_s:
                print(f"time budget of {args.budget_s:.0f} s spent; skipping the rest", flush=True)
                return 0
            sparse = CONFIGS[name][2]
            row = {"config": name, "shape": args.shape, "keep_ratio": args.keep_ratio if sparse else 1.0}
            row["cap_gib"] = args.cap_gib
            row.update(env, timestamp=stamp, command=command)
            if args.mode == "longest":
                row.update(longest_length(model, name, args, device), cap_gib=args.cap_gib)
                _append(args.out, LONGEST_FIELDS, row)
                _show(row, ("config", "longest_ok_T", "first_oom_T", "peak_alloc_gib", "median_step_s"))
                continue
            mlp = CONFIGS[name][3] or "dense"
            row.update(
                seq_len=T,
                backend=CONFIGS[name][4].get("backend", args.backend),
                mlp=mlp + ("/shared/kept" if CONFIGS[name][4].get("loss_tokens") == "kept" else ""),
            )
            row.update(_probe(model, name, T, args, device), completion=args.completion)
            if CONFIGS[name][4].get("tile_tokens"):
                row["tile_tokens"] = args.tile_tokens
            if row["status"] != "ok":
                out_of_memory.add(name)
            _append(args.out, FIELDS, row)
            _show(
                row,
                (
                    "predictor_ms_per_step",
                    "config",
                    "seq_len",
                    "status",
                    "peak_alloc_gib",
                    "peak_reserved_gib",
                    "median_step_s",
                    "tokens_per_s",
                    "fraction_of_matmul",
                ),
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
