"""End-to-end training-step benchmark: peak memory and step time of LoRA fine-tuning with and without lemo.

Configurations (design.md section 5), all HF + PEFT LoRA r=8, alpha=16 on q/k/v/o, bf16, batch 1, SDPA:
    lora        no gradient checkpointing, the model's own loss
    lora+gc     HF gradient checkpointing
    exact       lora+gc plus the segmented loss (lemo with no sparse layer)
    lemo        lemo on top of lora (token elimination + segmented loss)
    lemo+gc     lemo on top of exact
Random-init weights of the named shape: speed and memory do not depend on weight values, and keep ratios are
fixed, so this measures the system, not the model. One CSV row per (config, T); OOM is a result, not an error.

    python benchmarks/e2e/bench.py --shape llama2-7b --lengths 8192 16384 --configs lora lemo \
        --out benchmarks/results/e2e_reference_path.csv
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
    # name: (hidden, intermediate, layers, heads, kv_heads, vocab)
    "llama2-7b": (4096, 11008, 32, 32, 32, 32000),
    "llama3-8b": (4096, 14336, 32, 32, 8, 128256),
    "tiny": (256, 512, 4, 4, 2, 1024),
}
# name: (gradient checkpointing, segmented loss, token elimination, MLP mode[, extra SparsityConfig fields])
CONFIGS = {
    "lora": (False, False, False, None),
    "lora+gc": (True, False, False, None),
    "exact": (True, True, False, None),
    "lemo": (False, True, True, "dense"),
    "lemo+gc": (True, True, True, "dense"),
    "lemo-tokens": (False, True, True, "tokens"),
    "lemo-tokens+gc": (True, True, True, "tokens"),
    # quality-holding setting of docs/quality.md: one selection for all sparse layers, loss on kept positions
    "lemo-shared": (False, True, True, "tokens", {"shared_selection": True, "loss_tokens": "kept"}),
    "lemo-shared+gc": (True, True, True, "tokens", {"shared_selection": True, "loss_tokens": "kept"}),
    # learned predictors instead of the oracle (untrained, artifact shape: time and memory do not depend on values)
    "lemo-pred+gc": (True, True, True, "dense", {"scorer": "predictor"}),
    "lemo-pred-shared+gc": (
        True,
        True,
        True,
        "tokens",
        {"scorer": "predictor", "shared_selection": True, "loss_tokens": "kept"},
    ),
}
_PREDICTORS: list = []  # the predictor set of the current config, for its timings
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
    "gpu",
    "torch",
    "cuda",
    "transformers",
    "peft",
    "triton",
    "commit",
    "timestamp",
    "command",
]


def build_model(shape: str, device: torch.device, max_len: int):
    from peft import LoraConfig, get_peft_model
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
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
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


def configure(model, name: str, keep_ratio: float, backend: str) -> None:
    import lemo

    gc_on, segmented, sparse, mlp, *extra = CONFIGS[name]
    lemo.remove(model)
    if gc_on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    else:
        model.gradient_checkpointing_disable()
    _PREDICTORS.clear()
    if sparse:
        extra_fields = extra[0] if extra else {}
        cfg = lemo.SparsityConfig(
            keep_ratio=keep_ratio, sparse_layers="auto", mlp=mlp, backend=backend, **extra_fields
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
    elif segmented:
        lemo.apply(model, lemo.SparsityConfig(sparse_layers="none", segmented_loss=True, backend=backend))


def run_one(model, T: int, steps: int, warmup: int, device: torch.device) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    vocab = model.config.vocab_size
    ids = torch.randint(0, vocab, (1, T), device=device)
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
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
    if device.type == "cuda":
        row["peak_alloc_gib"] = torch.cuda.max_memory_allocated() / 2**30
        row["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    return row


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="llama2-7b")
    ap.add_argument("--lengths", type=int, nargs="+", default=[8192, 16384])
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["lora", "lemo"])
    ap.add_argument(
        "--budget-s", type=float, default=0, help="start no new run after this many seconds (0: none)"
    )
    ap.add_argument("--keep-ratio", type=float, default=0.4)
    ap.add_argument("--backend", default="reference", choices=["auto", "reference", "triton"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/e2e.csv"))
    args = ap.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    env = environment()
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    model = build_model(args.shape, device, max(args.lengths))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.out.exists():
        with args.out.open("w", newline="") as fh:
            csv.DictWriter(fh, fieldnames=FIELDS).writeheader()
    start = time.perf_counter()
    for T in args.lengths:
        for name in args.configs:
            if args.budget_s and time.perf_counter() - start > args.budget_s:
                print(f"time budget of {args.budget_s:.0f} s spent; skipping the rest", flush=True)
                return 0
            configure(model, name, args.keep_ratio, args.backend)
            sparse = CONFIGS[name][2]
            row = {"config": name, "shape": args.shape, "seq_len": T, "backend": args.backend}
            mlp = CONFIGS[name][3] or "dense"
            row.update(
                keep_ratio=args.keep_ratio if sparse else 1.0,
                mlp=mlp + ("/shared/kept" if "shared" in name else ""),
            )
            try:
                row.update(run_one(model, T, args.steps, args.warmup, device), status="ok")
            except torch.OutOfMemoryError:
                row.update(status="OOM")
            model.zero_grad(set_to_none=True)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            row.update(env, timestamp=stamp, command=command)
            # One row at a time: a run cut short by a time limit keeps everything measured so far.
            with args.out.open("a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore").writerow(row)
            shown = (
                "predictor_ms_per_step",
                "predictor_param_mib",
                "config",
                "seq_len",
                "status",
                "peak_alloc_gib",
                "peak_reserved_gib",
                "median_step_s",
                "tokens_per_s",
            )
            print(
                "  ".join(
                    f"{k}={row[k]:.3f}" if isinstance(row.get(k), float) else f"{k}={row.get(k)}"
                    for k in shown
                ),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
