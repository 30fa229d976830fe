"""Quality of lemo against dense LoRA on a real model (docs/design.md section 5, "Quality").

SmolLM2-135M-Instruct (trained to 8K) is extended to `--seq-len` with RoPE scaling and LoRA-fine-tuned on five
Austen novels, once per configuration, with the same steps, data order and seed; each adapter is then evaluated
*dense* on the sixth novel (Persuasion) at several context lengths. The base model with the same RoPE scaling
and no fine-tuning is evaluated too. One CSV row per (config, eval length).

    python benchmarks/quality/rope_extension.py --seq-len 16384 --steps 50 --configs lora lemo lemo-tokens \
        --eval-lengths 4096 8192 16384 --out benchmarks/results/quality_smollm2.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch
from common import provenance, timed_finetune  # benchmarks/quality/common.py, beside this script

from lemo.assets import HELD_OUT_NOVEL, austen_texts, smollm2_dir
from lemo.config import PAPER_FIELDS, FinetuneConfig
from lemo.eval.perplexity import perplexity
from lemo.integrations.peft import load_adapter
from lemo.integrations.transformers.loading import load_model
from lemo.train.data import tokenize_documents

# name: (token elimination, MLP mode, keep ratio); "longlora" is lora with LongLoRA's shifted sparse attention
CONFIGS = {
    "lora": (False, "dense", 1.0),
    "longlora": (False, "dense", 1.0),
    "lemo": (True, "dense", 0.4),
    "lemo-tokens": (True, "tokens", 0.4),
    "lemo-0.7": (True, "dense", 0.7),
}


def parse_config(spec: str) -> tuple[str, dict]:
    """A named config ("lemo") or a spec "k=0.7,layers=22-28,mlp=tokens" (lemo with those settings)."""
    if spec in CONFIGS:
        sparse, mlp, keep = CONFIGS[spec]
        attention = "s2" if spec == "longlora" else "default"
        return spec, {
            "sparse": sparse, "mlp": mlp, "keep_ratio": keep, "sparse_layers": "auto", "attention": attention
        }  # fmt: skip
    out = {"sparse": True, "mlp": "dense", "keep_ratio": 0.4, "sparse_layers": "auto"}
    for part in spec.split(","):
        key, _, value = part.partition("=")
        if key == "k":
            out["keep_ratio"] = float(value)
        elif key == "layers":
            lo, _, hi = value.partition("-")
            out["sparse_layers"] = list(range(int(lo), int(hi) + 1)) if hi else value
        elif key == "mlp":
            out["mlp"] = value
        elif key == "loss":
            out["loss_tokens"] = value
        elif key == "shared":
            out["shared_selection"] = value in ("1", "true", "yes")
        elif key == "pred":  # learned predictors from `lemo calibrate` instead of the oracle
            out["predictors"] = value
        else:
            raise SystemExit(
                f"unknown key {key!r} in config spec {spec!r}; use k=, layers=, mlp=, loss=, shared=, pred="
            )
    return spec, out


FIELDS = [
    "config", "seq_len", "steps", "lr", "keep_ratio", "mlp", "sparse_layers", "loss_tokens", "shared_selection",
    "scorer", "rope", "eval_len", "eval_windows", "ppl",
    "eval_tokens", "first_loss", "last_loss", "train_s", "gpu", "torch", "transformers", "peft", "commit",
    "timestamp", "command",
]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seq-len", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--rope", default="yarn")
    ap.add_argument("--rope-factor", type=float, default=2.0)
    ap.add_argument(
        "--configs", nargs="+", default=["lora", "lemo"], help="names or specs like k=0.7,layers=22-28"
    )
    ap.add_argument("--eval-lengths", type=int, nargs="+", default=[4096, 8192, 16384])
    ap.add_argument("--eval-windows", type=int, default=4)
    ap.add_argument("--work", type=Path, default=Path("runs/quality"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/quality_smollm2.csv"))
    args = ap.parse_args(argv)

    device = "cuda" if torch.cuda.is_available() else "cpu"
    env = provenance(argv)
    model_dir = smollm2_dir()
    corpus = austen_texts()
    if not corpus.source.startswith(("debian", "dir")):
        raise SystemExit(f"quality needs the Austen novels; got {corpus.source}. Set LEMO_AUSTEN_DIR.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.out.exists():
        with args.out.open("w", newline="") as fh:
            csv.DictWriter(fh, fieldnames=FIELDS).writeheader()

    def evaluate(name: str, adapter: Path | None, extra: dict) -> None:
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model, tok = load_model(
            model_dir, dtype=dtype, device=device, rope_scaling=args.rope, rope_factor=args.rope_factor
        )
        if adapter is not None:
            model = load_adapter(model, adapter).to(device)
        ids = torch.tensor(tokenize_documents([corpus.texts[HELD_OUT_NOVEL]], tok)[0])
        for n in args.eval_lengths:
            r = perplexity(model, ids, context=n, stride=n, max_windows=args.eval_windows)
            row = {
                "config": name,
                "eval_len": n,
                "eval_windows": r.windows,
                "ppl": r.ppl,
                "eval_tokens": r.tokens,
            }
            row.update(extra, rope=f"{args.rope}x{args.rope_factor:g}", seq_len=args.seq_len, **env)
            with args.out.open("a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore").writerow(row)
            print(f"{name:12s} eval@{n:6d}: ppl {r.ppl:8.3f}", flush=True)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()

    evaluate("base", None, {"steps": 0})
    for spec in args.configs:
        name, c = parse_config(spec)
        sparse, mlp, keep = c["sparse"], c["mlp"], c["keep_ratio"]
        cfg = FinetuneConfig(
            seq_len=args.seq_len,
            steps=args.steps,
            lr=args.lr,
            warmup_steps=max(1, args.steps // 10),
            rope_scaling=args.rope,
            rope_factor=args.rope_factor,
            sparse=sparse,
            sparsity={
                **PAPER_FIELDS,  # the configs name their changes from the paper's setting
                "keep_ratio": keep,
                "mlp": mlp,
                "sparse_layers": c["sparse_layers"],
                "loss_tokens": c.get("loss_tokens", "all"),
                "shared_selection": c.get("shared_selection", False),
                "scorer": "predictor" if c.get("predictors") else "oracle",
            },
            predictors=c.get("predictors"),
            attention=c.get("attention", "default"),
            gradient_checkpointing=True,
            save_every=0,
            output_dir=str(args.work / name.replace("=", "").replace(",", "_")),
            progress=False,
        )
        result, train_s = timed_finetune(name, cfg)
        extra = {
            "steps": args.steps, "lr": args.lr, "keep_ratio": keep if sparse else 1.0, "mlp": mlp,
            "sparse_layers": str(c["sparse_layers"]).replace(",", " ") if sparse else "none",
            "loss_tokens": c.get("loss_tokens", "all"),
            "shared_selection": c.get("shared_selection", False),
            "scorer": "predictor" if c.get("predictors") else ("s2-attention" if name == "longlora" else "oracle"),
            "first_loss": result.losses[0], "last_loss": result.losses[-1], "train_s": train_s,
        }  # fmt: skip
        evaluate(name, result.adapter_dir, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
