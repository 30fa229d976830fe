"""`lemo eval`: sliding-window perplexity of a model (plus adapter) on texts at several lengths."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from lemo.assets import austen_texts, smollm2_dir
from lemo.eval.config import EvalConfig
from lemo.eval.perplexity import PerplexityResult, perplexity
from lemo.integrations.peft import load_adapter
from lemo.integrations.transformers.loading import load_model
from lemo.train.data import load_documents, tokenize_documents
from lemo.train.loop import HELD_OUT_NOVEL, resolve_device


def evaluate(cfg: EvalConfig) -> list[PerplexityResult]:
    device, dtype = resolve_device(cfg.device, cfg.dtype)
    model, tokenizer = load_model(
        cfg.model or smollm2_dir(),
        dtype=dtype,
        device=device,
        rope_scaling=cfg.rope_scaling,
        rope_factor=cfg.rope_factor,
    )
    if cfg.adapter:
        model = load_adapter(model, cfg.adapter).to(device)
    docs = load_documents(cfg.data) if cfg.data else [austen_texts().texts[HELD_OUT_NOVEL]]
    ids = torch.tensor([t for d in tokenize_documents(docs, tokenizer) for t in d], dtype=torch.long)
    results = []
    for n in cfg.lengths:
        r = perplexity(
            model, ids, context=n, stride=cfg.stride or n, max_windows=cfg.windows or None, progress=True
        )
        print(f"ppl @ {n:>6} tokens: {r.ppl:9.3f}  ({r.tokens} tokens, {r.windows} windows)")
        results.append(r)
    if cfg.output:
        Path(cfg.output).write_text(json.dumps([asdict(r) for r in results], indent=1), encoding="utf-8")
    return results
