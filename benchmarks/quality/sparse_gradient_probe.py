"""Probe: how close is a sparse step's LoRA gradient to the dense step's, layer by layer (no training)?

On suite v14 the default trains to 0.910x dense LoRA's exact match at equal steps, and even the evidence oracle to
0.962x (docs/capability.md). Two guesses at why (docs/suite.md's v14 plan): the sparse forward is another function
than the dense one the eval runs, or a step that computes half the rows of the upper layers points the adapters
elsewhere than the dense step would. This probe measures the second, on the same rows for every config: per
decoder layer, the cosine between the config's LoRA gradient and dense LoRA's, and its norm against dense's.

The model is the suite's (SmolLM2-135M, YaRN x2, LoRA r8 on q/k/v/o, fp32) at a training step: with `--warm-steps
N`, after N steps of dense LoRA on other suite rows (lemo applied to none of them), so lora_B is not zero and
lora_A has a gradient too; with 0, the first step (lora_B zero: only lora_B's gradient exists). Prompt/completion
rows, the loss on the completion, as the suite trains. A config's random share draws from a fixed seed per row.

    python benchmarks/quality/sparse_gradient_probe.py --rows 8 --seq-len 4096 --warm-steps 20 \\
        --out benchmarks/results/sparse_gradient_probe_v14_cpu.csv

Rows: one per config, layer and measure (`cos`, `norm_ratio`), the mean over rows, and layer "all" for the whole
adapter; `loss` (family of the config's loss on the completion against dense's) once per config.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import torch
from common import provenance, suite_from_json  # beside this script
from cpu_lora import train_dense_lora
from suite_bias import block_masks

import lemo
from lemo.assets import austen_split, smollm2_dir
from lemo.config import SuiteConfig
from lemo.eval.suite_rows import training_rows
from lemo.integrations.transformers.loading import load_model
from lemo.integrations.transformers.patch import sparsity_state

EVIDENCE = "evidence_oracle"
# name -> SparsityConfig fields (the suite's configs of the same names; docs/suite.md)
CONFIGS: dict[str, dict] = {
    "default": {},
    "copy3-keep60": {"keep_ratio": 0.6},
    "oracle-default": {EVIDENCE: True, "copy_ngram": 0},  # as the suite's: measured before the copy tier
    # labels first, the rest uniformly at random (the suite's `random` at the default's keep): the floor
    "random": {"scorer": "oracle", "random_fraction": 1.0, "copy_ngram": 0},
}
FIELDS = ["config", "layer", "measure", "value", "rows", "seq_len", "warm_steps", "suite", "gpu", "torch",
          "transformers", "peft", "commit", "timestamp", "command"]  # fmt: skip


def lora_grads(model) -> dict[int, torch.Tensor]:
    """decoder layer -> its LoRA parameters' gradients, flattened into one vector (absent gradients skipped)."""
    per: dict[int, list[torch.Tensor]] = {}
    for name, p in model.named_parameters():
        if "lora_" in name and p.grad is not None:
            layer = int(name.split(".layers.")[1].split(".")[0])
            per.setdefault(layer, []).append(p.grad.detach().flatten().clone())
    return {k: torch.cat(v) for k, v in sorted(per.items())}


def step_grads(model, ids: list[int], n_prompt: int, evidence: torch.Tensor | None) -> tuple[dict, float]:
    """One training step's LoRA gradients per layer and its loss, for the row `ids` with the loss on the
    completion; `evidence` ([T] bool) is handed to the oracle's selection."""
    x = torch.tensor(ids)[None]  # [1, T]
    labels = x.clone()
    labels[:, :n_prompt] = -100
    if evidence is not None:  # read by this forward's selection, cleared at its end
        sparsity_state(model).evidence_mask = evidence[None]  # [1, T]
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=x, labels=labels).loss
    loss.backward()
    return lora_grads(model), loss.item()


def compare(dense: dict[int, torch.Tensor], other: dict[int, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Per layer (and "all"): cos(other, dense) and |other| / |dense|."""
    out = {}
    layers = [*dense, "all"]
    for layer in layers:
        d = torch.cat(list(dense.values())) if layer == "all" else dense[layer]
        o = (
            torch.cat([other.get(k, torch.zeros_like(v)) for k, v in dense.items()])
            if layer == "all"
            else (other.get(layer, torch.zeros_like(d)))
        )
        nd, no = d.norm().item(), o.norm().item()
        cos = (d @ o).item() / (nd * no) if nd > 0 and no > 0 else math.nan
        out[str(layer)] = {"cos": cos, "norm_ratio": no / nd if nd > 0 else math.nan}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--warm-steps", type=int, default=20, help="dense LoRA steps first, on other rows")
    ap.add_argument(
        "--checkpointing",
        action="store_true",
        help="gradient checkpointing (exact; 8K rows need it on 24 GiB)",
    )
    ap.add_argument("--suite", default='{"preset": "v14"}', help="SuiteConfig knobs as JSON over a preset")
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/sparse_gradient_probe_v14_cpu.csv"))
    args = ap.parse_args(argv)
    env = provenance(argv)
    cfg = suite_from_json(args.suite)
    texts = austen_split()[0]
    _, tok = load_model(smollm2_dir(), dtype=torch.float32, device="cpu")
    records = training_rows(texts, tok, args.seq_len, args.rows, seed=99, cfg=cfg)
    model = warm_model(tok, texts, cfg, args)
    sums: dict[tuple[str, str, str], float] = {}
    for i, rec in enumerate(records):
        row = block_masks(rec, "sup", tok, 64)
        dense, dense_loss = step_grads(model, row.ids, row.n_prompt, None)
        for name in args.configs:
            fields = dict(CONFIGS[name])
            oracle = fields.pop(EVIDENCE, False)
            torch.manual_seed(1000 + i)  # the random share: the same draw for this row in every run
            lemo.apply(model, lemo.SparsityConfig(**fields))
            grads, loss = step_grads(model, row.ids, row.n_prompt, row.evidence if oracle else None)
            lemo.remove(model)
            for layer, ms in compare(dense, grads).items():
                for m, v in ms.items():
                    sums[(name, layer, m)] = sums.get((name, layer, m), 0.0) + v / len(records)
            sums[(name, "-", "loss_ratio")] = sums.get(
                (name, "-", "loss_ratio"), 0.0
            ) + loss / dense_loss / len(records)
        print(f"row {i + 1}/{len(records)}: dense loss {dense_loss:.3f}", flush=True)
    write(args, env, sums)
    return 0


def warm_model(tok, texts, cfg: SuiteConfig, args):
    """SmolLM2 (YaRN x2) with LoRA, after `--warm-steps` dense steps on suite rows of another seed, in training
    mode: the adapter state the probe's step starts from."""
    from peft import LoraConfig, get_peft_model

    base, _ = load_model(
        smollm2_dir(), dtype=torch.float32, device="cpu", rope_scaling="yarn", rope_factor=2.0
    )
    if args.checkpointing:  # exact: the same gradients, in the memory an 8K row needs on a 24 GiB machine
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    if args.warm_steps:
        rows = training_rows(texts, tok, args.seq_len, args.warm_steps, seed=7, cfg=cfg)
        model, _ = train_dense_lora(smollm2_dir(), tok, rows, base=base)
        return model.train()
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    return get_peft_model(base, lora).train()


def write(args, env: dict, sums: dict[tuple[str, str, str], float]) -> None:
    """The CSV, and the table of whole-adapter and per-half means printed."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        w.writeheader()
        for (name, layer, m), v in sums.items():
            w.writerow(dict(config=name, layer=layer, measure=m, value=f"{v:.4f}", rows=args.rows,
                            seq_len=args.seq_len, warm_steps=args.warm_steps, suite=args.suite, **env))  # fmt: skip
    for name in args.configs:
        layers = sorted(int(k) for (n, k, m) in sums if n == name and m == "cos" and k not in ("all", "-"))
        half = len(layers) // 2
        lower = [sums[(name, str(k), "cos")] for k in layers[:half]]
        upper = [sums[(name, str(k), "cos")] for k in layers[half:]]
        print(
            f"{name:16s} cos all {sums[(name, 'all', 'cos')]:.3f}  lower half {sum(lower) / len(lower):.3f}  "
            f"upper half {sum(upper) / len(upper):.3f}  norm all {sums[(name, 'all', 'norm_ratio')]:.3f}  "
            f"loss {sums[(name, '-', 'loss_ratio')]:.3f}x dense"
        )


if __name__ == "__main__":
    raise SystemExit(main())
