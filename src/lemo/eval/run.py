"""`lemo eval` (perplexity, or capability on a synthetic task) and `lemo data` (task rows for training)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from lemo.assets import austen_split, smollm2_dir
from lemo.config import DataConfig, EvalConfig
from lemo.eval.capability import evaluate_capability
from lemo.eval.capability_result import CapabilityResult
from lemo.eval.perplexity import PerplexityResult, perplexity
from lemo.eval.tasks import training_records
from lemo.integrations.peft import load_adapter
from lemo.integrations.transformers.loading import load_model
from lemo.train.data import load_documents, tokenize_documents
from lemo.utils.device import resolve_device

log = logging.getLogger(__name__)


def evaluate(cfg: EvalConfig) -> list[PerplexityResult] | CapabilityResult:
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
    docs = load_documents(cfg.data) if cfg.data else [austen_split()[1]]
    if cfg.task:
        return _evaluate_task(cfg, model, tokenizer, docs)
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


def _evaluate_task(cfg: EvalConfig, model: Any, tokenizer: Any, docs: list[str]) -> CapabilityResult:
    assert cfg.task is not None
    result = evaluate_capability(
        model,
        tokenizer,
        cfg.task,
        docs,
        cfg.lengths,
        cfg.depths,
        cfg.samples,
        n_keys=cfg.n_keys,
        modes=cfg.modes,
        n_chains=cfg.n_chains,
        **_task_options(cfg),
    )
    print(result.format_table())
    if cfg.output:
        out = Path(cfg.output)
        paths = [out] if out.suffix in (".json", ".csv") else [Path(f"{out}.json"), Path(f"{out}.csv")]
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            (result.to_csv if p.suffix == ".csv" else result.to_json)(p)
            print(f"wrote {p}")
    _plot(cfg, result)
    return result


def _task_options(cfg: EvalConfig | DataConfig) -> dict[str, int]:
    """The task generator's options that `lemo eval --task` and `lemo data` share: the same names, the same rows."""
    return {"seed": cfg.seed, "n_values": cfg.n_values, "n_hops": cfg.n_hops}


def _plot(cfg: EvalConfig, result: CapabilityResult) -> None:
    if cfg.plot and cfg.plot.lower() == "none":
        return
    if cfg.plot:
        path = Path(cfg.plot)
    elif cfg.output:
        out = Path(cfg.output)
        path = out.with_suffix(".png") if out.suffix in (".json", ".csv") else Path(f"{out}.png")
    else:
        return
    try:
        result.plot_heatmap(path)
    except ImportError as err:
        if cfg.plot:  # asked for by name: a missing dependency is an error
            raise RuntimeError(str(err)) from err
        log.warning("no heatmap: %s", err)
        return
    print(f"wrote {path}")


def load_tokenizer(model_dir: str | Path) -> Any:
    """The tokenizer of a local HF model directory, never from a hub (as `load_model` loads it)."""
    from transformers import AutoTokenizer

    path = Path(model_dir)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path} is not a model directory; pass --model DIR with a saved HF model (its tokenizer counts "
            "the tokens), or leave --model out to use the embedded SmolLM2-135M-Instruct."
        )
    return AutoTokenizer.from_pretrained(path, local_files_only=True)


def make_task_data(cfg: DataConfig) -> Path:
    """Write `cfg.rows` training rows of `cfg.task` to `cfg.out` as JSONL ({"prompt", "completion"})."""
    if not cfg.out:
        raise ValueError("pass --out FILE.jsonl: the file to write the rows to.")
    out = Path(cfg.out)
    if out.suffix != ".jsonl":
        raise ValueError(f"--out {out}: use a .jsonl file name (one JSON record per line).")
    texts = load_documents(cfg.data) if cfg.data else austen_split()[0]
    tokenizer = load_tokenizer(cfg.model or smollm2_dir())
    records = training_records(
        cfg.task,
        texts,
        tokenizer,
        cfg.seq_len,
        cfg.rows,
        keys_per_row=cfg.keys,
        **_task_options(cfg),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"wrote {len(records)} {cfg.task} rows of <= {cfg.seq_len} tokens to {out}")
    return out
