"""Capability and perplexity of lemo's selections against dense LoRA, at the same steps and at equal GPU time.

The setup of docs/design.md section 1.1 / issue 9: SmolLM2-135M-Instruct extended 8K -> 16K with YaRN x2, LoRA r8 on
q/k/v/o, lr 5e-4, gradient checkpointing, on rows of `--seq-len` tokens from five Austen novels, each holding
16 facts "The secret code of NAME is NNNNN." (train name pool) and, at its end, the 16 questions answered
(`lemo data --task multikey`). Two forms of the same rows:
- "sup" (the default): prompt/completion JSONL, the loss on the answered questions only;
- "text": the same rows as plain text, the loss on every position (what the measurement of design.md 1.1 used).
Every adapter is evaluated dense on *Persuasion* (never trained on) with eval-pool names: multi-key retrieval
(16 keys, teacher-forced and greedy exact match) at each length and depth, and held-out perplexity.

A config is "[text:]NAME[@STEPS]": NAME from `CONFIGS`, STEPS overrides --steps (dense LoRA trained for fewer
steps is the equal-GPU-time baseline; the warm-up stays that of --steps, so @48 is the 60-step run stopped at 48).
Configs run in `--workers` processes side by side on one GPU (the 135M model leaves it mostly idle).

    python benchmarks/quality/capability.py --configs dense dense@48 preset prio-random --workers 3 \
        --out benchmarks/results/capability_smollm2.csv
    python benchmarks/quality/capability.py --bias --out benchmarks/results/selection_bias.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch
from common import (  # benchmarks/quality/common.py, beside this script
    load_eval_model,
    provenance,
    run_workers,
    setup_config,
    timed_finetune,
)

from lemo.assets import austen_split, smollm2_dir
from lemo.config import PAPER_FIELDS
from lemo.eval.capability import evaluate_capability
from lemo.eval.perplexity import perplexity
from lemo.eval.tasks import training_records
from lemo.integrations.transformers.loading import load_model
from lemo.train.data import tokenize_documents

TOKENS = {"mlp": "tokens", "shared_selection": True, "loss_tokens": "kept"}
# name: None for dense LoRA, or the SparsityConfig fields on top of sparse_layers="auto" and --keep-ratio.
CONFIGS: dict[str, dict | None] = {
    "dense": None,
    "longlora": None,  # dense LoRA with LongLoRA's shifted sparse attention in training
    "preset": TOKENS,  # the previous preset: oracle, shared selection, loss on kept positions
    "random": {**TOKENS, "random_fraction": 1.0},
    "prio-oracle": {**TOKENS, "label_priority": True},
    "prio-mix": {**TOKENS, "label_priority": True, "random_fraction": 0.5},
    "prio-random": {**TOKENS, "label_priority": True, "random_fraction": 1.0},
    "paper": {"mlp": "dense"},  # per-layer oracle selection, loss on all positions
}
FIELDS = [
    "config", "data", "steps", "keep_ratio", "sparsity", "metric", "eval_len", "depth", "value", "n",
    "train_s", "first_loss", "last_loss", "seq_len", "gpu", "torch", "transformers", "peft", "commit",
    "timestamp", "command",
]  # fmt: skip
BIAS_FIELDS = [
    "selection",
    "form",
    "keep_ratio",
    "feature",
    "bin",
    "kept_share",
    "blocks",
    "rows",
    "seq_len",
    "gpu",
    "commit",
    "command",
]


def parse(spec: str, default_steps: int) -> tuple[str, str, int]:
    """ "text:dense@48" -> ("text", "dense", 48)."""
    data, _, rest = spec.rpartition(":")
    name, _, steps = rest.partition("@")
    if name not in CONFIGS or data not in ("", "sup", "text"):
        raise SystemExit(f"unknown config {spec!r}; use [text:]NAME[@STEPS] with NAME in {sorted(CONFIGS)}")
    return data or "sup", name, int(steps) if steps else default_steps


def write_data(args) -> dict[str, Path]:
    """The training rows, once, in both forms (the same rows, so the forms differ only in the loss)."""
    _, tok = load_model(smollm2_dir(), dtype=torch.float32, device=torch.device("cpu"))
    train, _ = austen_split()
    records = training_records(
        "multikey", train, tok, args.seq_len, args.rows, keys_per_row=16, seed=args.seed
    )
    args.work.mkdir(parents=True, exist_ok=True)
    paths = {"sup": args.work / "sup.jsonl", "text": args.work / "text.jsonl"}
    with paths["sup"].open("w") as sup, paths["text"].open("w") as text:
        for r in records:
            sup.write(json.dumps(r) + "\n")
            text.write(json.dumps({"text": r["prompt"] + r["completion"]}) + "\n")
    return paths


def evaluate(args, adapter: Path | None) -> list[dict]:
    """Retrieval (per length and depth, both modes, and the mean over depths) and perplexity, dense."""
    model, tok = load_eval_model(adapter)
    _, held = austen_split()
    res = evaluate_capability(
        model, tok, "multikey", held, args.eval_lengths, args.depths, args.samples, seed=1, progress=False
    )
    rows = [
        {
            "metric": f"retrieval_{r.mode}",
            "eval_len": r.length,
            "depth": r.depth,
            "value": r.accuracy,
            "n": r.n,
        }
        for r in res.rows
    ]
    for (length, mode), acc in res.mean_over_depths().items():
        n = sum(r.n for r in res.rows if r.length == length and r.mode == mode)
        rows.append({"metric": f"retrieval_{mode}", "eval_len": length, "depth": "all", "value": acc, "n": n})
    ids = torch.tensor(tokenize_documents([held], tok)[0])
    for n in args.ppl_lengths:
        r = perplexity(model, ids, context=n, stride=n, max_windows=args.ppl_windows)
        rows.append({"metric": "ppl", "eval_len": n, "depth": "all", "value": r.ppl, "n": r.tokens})
    return rows


def run_one(args, spec: str, data: dict[str, Path], env: dict) -> None:
    form, name, steps = parse(spec, args.steps)
    sparsity = CONFIGS[name]
    extra = {"seq_len": args.seq_len, "data": form, "steps": steps, **env}
    if name == "base":
        rows = evaluate(args, None)
        extra["sparsity"] = "untrained"
    else:
        # Configs name their changes from the paper's setting, so new library defaults leave their meaning.
        sp = {**PAPER_FIELDS, "sparse_layers": "auto", "keep_ratio": args.keep_ratio, **(sparsity or {})}
        cfg = setup_config(
            data[form],
            args.seq_len,
            steps,
            args.steps,
            args.lr,
            sp if sparsity is not None else None,
            data_mode="chunk" if name == "longlora" else "pack",  # S² takes no packed rows
            attention="s2" if name == "longlora" else "default",
            seed=args.seed,
            output_dir=str(args.work / spec.replace(":", "_").replace("@", "_")),
        )
        result, train_s = timed_finetune(spec, cfg)
        rows = evaluate(args, result.adapter_dir)
        extra.update(
            train_s=train_s,
            first_loss=result.losses[0],
            last_loss=result.losses[-1],
            keep_ratio=args.keep_ratio if sparsity is not None else 1.0,
            sparsity=json.dumps(sparsity)
            if sparsity is not None
            else ("s2" if name == "longlora" else "dense"),
        )
    out = args.out.with_suffix(f".{spec.replace(':', '_').replace('@', '_')}.part")
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({"config": spec, **extra, **r})
    summary = {(r["metric"], r["eval_len"]): r["value"] for r in rows if r["depth"] == "all"}
    print(spec, " ".join(f"{m}@{n}={v:.3f}" for (m, n), v in sorted(summary.items())), flush=True)


def bias(args, env: dict) -> None:
    """How often each selection eliminates a block, by relative position and by what the block holds."""
    from lemo import SparsityConfig, apply, remove, stats

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model, tok = load_model(smollm2_dir(), dtype=dtype, device=device, rope_scaling="yarn", rope_factor=2.0)
    model.train()  # elimination runs in training mode; no gradient is taken
    train, _ = austen_split()
    records = training_records("multikey", train, tok, args.seq_len, args.bias_rows, keys_per_row=16, seed=7)
    paper = {
        "oracle (preset)": TOKENS,
        "oracle + label priority": {**TOKENS, "label_priority": True},
        "mix 0.5 + label priority": {**TOKENS, "label_priority": True, "random_fraction": 0.5},
        "random + label priority": {**TOKENS, "label_priority": True, "random_fraction": 1.0},
        "oracle per layer (paper)": {"mlp": "dense"},
    }
    k = args.keep_ratio
    selections = {
        name: SparsityConfig.paper(sparse_layers="auto", keep_ratio=k, **fields)
        for name, fields in paper.items()
    }
    # SparsityConfig() with and without its copy tier: a check of the tier on rows it was not built on (suite v7's
    # recall family was what it was made for; these are `lemo data`'s multi-key rows)
    selections["default, no copy tier"] = SparsityConfig(keep_ratio=k, copy_ngram=0)
    # in both forms: SparsityConfig() when this ran (de998a3); the plain-text tier is an option since
    selections["default (copy tier)"] = SparsityConfig(keep_ratio=k, copy_plain_text=True)
    # the plain-text tier with the text that repeats each source kept too (copy_repeats)
    selections["copy tier + repeats"] = SparsityConfig(keep_ratio=k, copy_plain_text=True, copy_repeats=True)
    if args.selections:
        unknown = set(args.selections) - set(selections)
        if unknown:
            raise SystemExit(f"unknown selections {sorted(unknown)}; choose from {sorted(selections)}")
        selections = {name: selections[name] for name in args.selections}
    b = 64
    tallies: dict[tuple[str, str, str], list[int]] = {}
    for rec in records:
        enc = tok(rec["prompt"], add_special_tokens=False, return_offsets_mapping=True)
        comp = tok.encode(rec["completion"], add_special_tokens=False)
        ids = torch.tensor([enc["input_ids"] + comp], device=device)  # [1, T]
        T = ids.shape[1]
        labels = torch.full_like(ids, -100)
        labels[:, len(enc["input_ids"]) :] = ids[:, len(enc["input_ids"]) :]
        if args.bias_form == "text":  # the same row as plain text: every position labelled
            labels = ids.clone()
        nb = -(-T // b)
        region = ["filler"] * nb
        start = 0
        while (i := rec["prompt"].find("The secret code of", start)) >= 0:  # the needles' blocks
            tokpos = next(t for t, (s, e) in enumerate(enc["offset_mapping"]) if e > i)
            region[tokpos // b] = "needle"
            start = i + 1
        for blk in range((len(enc["input_ids"]) - 1) // b, nb):  # blocks whose positions predict a label
            region[blk] = "answers"
        for name, config in selections.items():
            apply(model, config)
            with torch.no_grad():
                model(input_ids=ids, labels=labels)
            per_layer = stats(model)
            for st in per_layer.values():
                kept = set(st["blocks"][0])
                for blk in range(nb):
                    feats = (("region", region[blk]), ("position decile", str(min(9, 10 * blk // nb))))
                    for feat, value in feats:
                        t = tallies.setdefault((name, feat, value), [0, 0])
                        t[0] += blk in kept
                        t[1] += 1
            remove(model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.exists()
    with args.out.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=BIAS_FIELDS, extrasaction="ignore")
        if new:
            w.writeheader()
        for (name, feat, value), (k, n) in sorted(tallies.items()):
            row = {
                "selection": name,
                "form": args.bias_form,
                "keep_ratio": args.keep_ratio,
                "feature": feat,
                "bin": value,
            }
            row.update(kept_share=k / n, blocks=n, rows=len(records), seq_len=args.seq_len, **env)
            w.writerow(row)
            print(f"{name:28s} {feat:16s} {value:8s} kept {k / n:.3f} ({n} block-layers)", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["base", "dense", "prio-random"])
    ap.add_argument("--seq-len", type=int, default=16384)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rows", type=int, default=60, help="training rows (60 steps of batch 1 see each once)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--keep-ratio", type=float, default=0.6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-lengths", type=int, nargs="+", default=[4096, 8192, 16384])
    ap.add_argument("--depths", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7, 0.9])
    ap.add_argument("--samples", type=int, default=8, help="samples per (length, depth)")
    ap.add_argument("--ppl-lengths", type=int, nargs="+", default=[16384])
    ap.add_argument("--ppl-windows", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--bias", action="store_true", help="measure the selections' elimination bias instead")
    ap.add_argument("--bias-rows", type=int, default=8)
    ap.add_argument(
        "--bias-form", choices=("sup", "text"), default="sup", help="prompt/completion or plain text"
    )
    ap.add_argument("--selections", nargs="+", help="--bias: only these selections (names as in the CSV)")
    ap.add_argument("--work", type=Path, default=Path("runs/capability"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/capability_smollm2.csv"))
    ap.add_argument("--only", help=argparse.SUPPRESS)  # one config, in a worker process
    args = ap.parse_args(argv)
    CONFIGS["base"] = None
    env = provenance(argv)
    if args.bias:
        bias(args, env)
        return 0
    data = {"sup": args.work / "sup.jsonl", "text": args.work / "text.jsonl"}
    if args.only:
        run_one(args, args.only, data, env)
        return 0
    for spec in args.configs:
        parse(spec, args.steps)  # refuse a typo before any work
    data = write_data(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    base_cmd = [sys.executable, sys.argv[0], *(argv if argv is not None else sys.argv[1:])]
    run_workers(
        args.configs,
        lambda spec: [*base_cmd, "--only", spec],
        args.workers,
        env_vars(env),
        lambda spec, _rc, _s: merge(args.out, spec, env["command"]),  # a run cut short keeps what it measured
    )
    return 0


def merge(out: Path, spec: str, command: str) -> None:
    part = out.with_suffix(f".{spec.replace(':', '_').replace('@', '_')}.part")
    if not part.exists():
        return
    new = not out.exists()
    with out.open("a", newline="") as fh, part.open() as src:
        w = csv.DictWriter(fh, fieldnames=FIELDS)
        if new:
            w.writeheader()
        for row in csv.DictReader(src):
            w.writerow({**row, "command": command})
    part.unlink()


def env_vars(env: dict) -> dict[str, str]:
    """Workers record the parent's timestamp and commit."""
    return {"LEMO_COMMIT": env["commit"]}


if __name__ == "__main__":
    sys.exit(main())
