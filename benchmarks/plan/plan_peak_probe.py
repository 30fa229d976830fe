"""Where the step peak of a small Llama falls on a CPU, what is alive there, and what `lemo plan` predicts.

    python benchmarks/plan/plan_peak_probe.py                       # exact + offload + MLP tiling, 8B proportions
    python benchmarks/plan/plan_peak_probe.py --mode tiled-attn --targets q_proj o_proj
    python benchmarks/plan/plan_peak_probe.py --mode untiled --out benchmarks/results/plan_peak_probe.csv  # a CSV row

The shape keeps Llama-3-8B's proportions at a CPU's size (hidden 512, intermediate 3.5x, 8 heads over 2 KV
heads), where `tests/plan/test_cpu_peaks.py`'s tiny shape does not: there the MLP phase always dominates. The
storage counting is that test's (every storage an op creates, until Python frees it); in addition the
tensors alive at the peak are listed by the op that made them, the autograd node running then, shape and dtype.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

import lemo  # noqa: E402
from lemo.bench.run import environment  # noqa: E402
from lemo.bench.storages import LiveStorages  # noqa: E402
from lemo.integrations.transformers.loading import enable_gradient_checkpointing  # noqa: E402
from lemo.plan import PlanConfig, predict, resolve_shape  # noqa: E402
from lemo.plan.memory import lora_params  # noqa: E402

SHAPE = dict(hidden_size=512, intermediate_size=1792, num_hidden_layers=3, num_attention_heads=8,
             num_key_value_heads=2, vocab_size=512, max_position_embeddings=65536, model_type="llama",
             tie_word_embeddings=False)  # fmt: skip
MODES = {
    "untiled": {"sparse_layers": "none", "offload": "cpu"},
    "tiled": {"sparse_layers": "none", "offload": "cpu", "tile_tokens": True},
    "tiled-attn": {"sparse_layers": "none", "offload": "cpu", "tile_tokens": True, "tile_attention": True},
}
# With --liger, the modes are `lemo bench`'s liger-exact stacks: Liger's fused loss over every position, the last
# layer whole and PEFT's adapter input copies, as bench's EXACT options set them.
LIGER_EXACT = {
    "segmented_loss": False,
    "loss_tokens": "all",
    "trim_last_layer": False,
    "share_lora_inputs": False,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=list(MODES), default="tiled")
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--targets", nargs="+", default=["q_proj", "k_proj", "v_proj", "o_proj"])
    ap.add_argument(
        "--hf-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also turn on HF's gradient checkpointing, as lemo bench and lemo finetune do",
    )
    ap.add_argument(
        "--liger",
        action="store_true",
        help="Liger-Kernel's kernels in Triton's interpreter (run with TRITON_INTERPRET=1; slow: keep T small)",
    )
    ap.add_argument(
        "--sparse",
        action="store_true",
        help="lemo's default (SparsityConfig()'s elimination) on top of the mode's offload and tiling, where the "
        "modes alone are exact stacks",
    )
    ap.add_argument(
        "--attention-kernel",
        choices=("auto", "sdpa", "lemo"),
        default="auto",
        help="SparsityConfig.attention_kernel; 'lemo' with --backend triton runs lemo's varlen kernel, as past "
        "128K rows on a GPU (under TRITON_INTERPRET=1 here)",
    )
    ap.add_argument("--backend", choices=("auto", "reference", "triton"), default="auto")
    ap.add_argument("--out", type=Path, help="append the result as a row of this CSV (with its provenance)")
    args = ap.parse_args(argv)
    if args.liger:
        sys.path.insert(0, str(ROOT / "tests"))
        import liger_cpu  # the interpreter's two gaps closed, as the CPU tests run Liger

        liger_cpu.install()
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    model_dir = Path(tempfile.mkdtemp(prefix="lemo-probe-"))
    (model_dir / "config.json").write_text(json.dumps(SHAPE))
    torch.manual_seed(0)
    config = LlamaConfig(
        **{k: v for k, v in SHAPE.items() if k != "model_type"}, attn_implementation="sdpa", use_cache=False
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=args.targets)).train()
    if args.hf_checkpointing:
        enable_gradient_checkpointing(model)
    settings = {k: (args.tile if v is True else v) for k, v in MODES[args.mode].items()}
    if args.sparse:
        del settings["sparse_layers"]  # SparsityConfig()'s layers, keep and selector
    settings.update(attention_kernel=args.attention_kernel, backend=args.backend)
    if args.liger:
        from lemo.integrations.liger import apply_liger

        apply_liger(model)
        if not args.sparse:
            settings.update(LIGER_EXACT)
    sparsity = lemo.SparsityConfig(**settings)
    lemo.apply(model, sparsity)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, SHAPE["vocab_size"], (1, args.seq_len))

    def step() -> None:
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # AdamW's moments exist from here on
    states = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
    with LiveStorages([*model.parameters(), *model.buffers(), *states], record=True) as mode:
        step()
    cfg = PlanConfig(model=str(model_dir), seq_len=args.seq_len, sparse=True, sparsity=sparsity,
                     gradient_checkpointing=True, dtype="bf16", device="cpu", host_gib=1e3, liger=args.liger,
                     lora={"rank": 8, "targets": list(args.targets)})  # fmt: skip
    plan = predict(cfg, advise=False)
    shape = resolve_shape(str(model_dir), None)
    # As in the CPU test: the pool is ordinary memory here, and weights and adapter states predate the step.
    planned = (plan.gpu_peak_gib + plan.host_gib - plan.breakdown_gib["weights"]) * 2**30 - 12 * lora_params(
        shape, cfg
    )
    mib = 2**20
    liger = ", Liger" if args.liger else ""
    sparse = ", lemo's default" if args.sparse else ""
    print(
        f"{args.mode}{liger}{sparse}, T={args.seq_len}, tile {args.tile}, adapters {' '.join(args.targets)}"
    )
    print(f"measured step peak {mode.peak / mib:.2f} MiB at {mode.peak_op}")
    print(f"planned            {planned / mib:.2f} MiB ({(planned - mode.peak) / mode.peak:+.1%})")
    print("alive at the peak (MiB, made by):")
    by_maker = collections.Counter()
    for size, maker in mode.at_peak:
        by_maker[maker] += size
    for maker, size in by_maker.most_common(40):
        print(f"  {size / mib:8.2f}  {maker}")
    print("plan breakdown (MiB):", {k: round(v * 1024, 2) for k, v in plan.breakdown_gib.items()})
    if args.out is not None:
        env = environment()
        row = {
            "mode": args.mode
            + ("+liger" if args.liger else "")
            + ("+sparse" if args.sparse else "")
            + ("" if args.attention_kernel == "auto" else f"+{args.attention_kernel}-attn"),
            "seq_len": args.seq_len,
            "tile": args.tile,
            "adapters": " ".join(args.targets),
            "hf_checkpointing": args.hf_checkpointing,
            "measured_mib": f"{mode.peak / mib:.2f}",
            "planned_mib": f"{planned / mib:.2f}",
            "err_pct": f"{(planned - mode.peak) / mode.peak * 100:+.1f}",
            "peak_at": mode.peak_op,
            "alive_at_peak": "; ".join(
                f"{size / mib:.2f} MiB {maker}" for maker, size in by_maker.most_common(12)
            ),
            **{k: env[k] for k in ("torch", "transformers", "peft", "commit")},
            "command": "python benchmarks/plan/plan_peak_probe.py "
            + " ".join(sys.argv[1:] if argv is None else argv),
        }
        new = not args.out.exists()
        with args.out.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
