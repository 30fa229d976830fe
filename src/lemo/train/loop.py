"""The fine-tuning loop behind `lemo finetune`: LoRA (+ token elimination) on long rows, resumable.

Order of work: resolve the model and data, wrap with LoRA, apply lemo, optionally resume, evaluate held-out
perplexity, train with checkpoints every N steps, save the adapter and the run config, evaluate again.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lemo.assets import austen_texts, smollm2_dir
from lemo.eval.perplexity import PerplexityResult, perplexity
from lemo.integrations.peft import add_lora, load_trainable_state, save_adapter, trainable_state
from lemo.integrations.transformers import apply, enable_shifted_sparse_attention, mean_kept_fraction
from lemo.integrations.transformers.archs import spec_for
from lemo.integrations.transformers.calibration import load_predictors
from lemo.integrations.transformers.loading import load_model
from lemo.train.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from lemo.train.config import FinetuneConfig
from lemo.train.data import (
    DataOrder,
    Record,
    TextRecord,
    build_examples,
    collate,
    load_documents,
    load_records,
    tokenize_documents,
    tokenize_records,
)
from lemo.train.interrupt import TrainingInterrupted, stop_on_sigint
from lemo.train.progress import MetricsWriter, Progress
from lemo.train.reporting import Reporters
from lemo.train.run_safety import (
    check_model_dir,
    check_resume_compatible,
    prepare_output_dir,
    warn_on_useless_lengths,
)
from lemo.train.schedule import build_scheduler

log = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    output_dir: Path
    adapter_dir: Path
    losses: list[float] = field(default_factory=list)
    ppl_before: list[PerplexityResult] = field(default_factory=list)
    ppl_after: list[PerplexityResult] = field(default_factory=list)
    start_step: int = 0


def resolve_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    )
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device} asks for CUDA, but no GPU is visible; use --device cpu.")
    if dtype == "auto":
        dtype = "bf16" if dev.type == "cuda" else "fp32"
    return dev, torch.bfloat16 if dtype == "bf16" else torch.float32


def _documents(cfg: FinetuneConfig) -> tuple[list[Record], list[str], str]:
    """Training records (text, prompt/completion or chat), held-out plain texts, and where they came from.

    The held-out texts only feed perplexity, so supervised records there count as plain text
    (prompt + completion; see `load_documents`).
    """
    if cfg.data:
        train = load_records(cfg.data)
        held = load_documents(cfg.eval_data) if cfg.eval_data else []
        return train, held, "files"
    corpus = austen_texts()
    novels, held_name = corpus.split()
    train: list[Record] = [TextRecord(text, n) for n, text in novels.items()]
    held = load_documents(cfg.eval_data) if cfg.eval_data else [corpus.texts[held_name]]
    return train, held, corpus.source


def _evaluate(
    model, held_ids: torch.Tensor | None, cfg: FinetuneConfig, label: str, say
) -> list[PerplexityResult]:
    if held_ids is None or not cfg.eval_lengths:
        return []
    results = []
    for n in cfg.eval_lengths:
        r = perplexity(model, held_ids, context=n, stride=n, max_windows=cfg.eval_windows)
        say(f"held-out perplexity {label} @ {n} tokens: {r.ppl:.3f} ({r.tokens} tokens scored)")
        results.append(r)
    return results


def finetune(cfg: FinetuneConfig, *, stop_after: int | None = None) -> FinetuneResult:
    """Run a fine-tune as described by `cfg`. `stop_after` ends the run early after that many steps
    (as a kill would, but cleanly); used to test resuming."""
    out = Path(cfg.output_dir)
    prepare_output_dir(out, resume=cfg.resume, overwrite=cfg.overwrite)
    device, dtype = resolve_device(cfg.device, cfg.dtype)
    model_dir = cfg.model or smollm2_dir()
    check_model_dir(model_dir)
    # What this run really uses (config.yaml and the checkpoints record it; resume compares against it).
    used = dataclasses.replace(
        cfg, model=str(model_dir), dtype="bf16" if dtype == torch.bfloat16 else "fp32", device=str(device)
    )
    ckpt_dir = out / "checkpoints"
    ckpt = load_checkpoint(ckpt_dir) if cfg.resume else None
    if cfg.resume and ckpt is None:
        log.warning("--resume: no checkpoint in %s; starting from step 0.", ckpt_dir)
    if ckpt is not None:
        check_resume_compatible(ckpt["config"], used.to_dict(), FinetuneConfig().to_dict())
    # Seeded here, after smollm2_dir(): a first-run model conversion draws random numbers (and again before
    # LoRA init below), so a run's result does not depend on whether the conversion ran.
    torch.manual_seed(cfg.seed)
    model, tokenizer = load_model(
        model_dir, dtype=dtype, device=device, rope_scaling=cfg.rope_scaling, rope_factor=cfg.rope_factor
    )
    warn_on_useless_lengths(cfg, getattr(model.config, "max_position_embeddings", None))
    if cfg.sparse:
        spec_for(
            model.config.model_type
        )  # an unsupported architecture is said so before LoRA targets are checked

    train_records, held_docs, source = _documents(cfg)
    # Labels come with the tokens: every token for text, only completions and assistant turns otherwise.
    token_records = tokenize_records(train_records, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    examples = build_examples(token_records, cfg.seq_len, cfg.data_mode, cfg.sparsity.block_size, pad_id)
    held_ids = None
    if held_docs:
        held_ids = torch.tensor(
            [t for d in tokenize_documents(held_docs, tokenizer) for t in d], dtype=torch.long
        )
    rows = cfg.batch_size * cfg.grad_accum
    if rows > len(examples):
        raise ValueError(
            f"--batch-size {cfg.batch_size} x --grad-accum {cfg.grad_accum} = {rows} rows per step, but the data "
            f"gives only {len(examples)} rows of {cfg.seq_len} tokens; lower them or add text."
        )
    order = DataOrder(len(examples), seed=cfg.seed)

    torch.manual_seed(cfg.seed)
    lora = cfg.lora
    model = add_lora(
        model, lora.rank, lora.alpha, lora.dropout, lora.targets, lora.train_norms, lora.train_embeddings
    )
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    model.config.use_cache = False
    if cfg.attention == "s2":
        enable_shifted_sparse_attention(model)  # after LoRA, so it sees the final model; training only
    predictors = None
    if cfg.sparse and cfg.sparsity.scorer == "predictor":
        if not cfg.predictors:
            raise ValueError("--scorer predictor needs --predictors DIR (made by `lemo calibrate`).")
        predictors = load_predictors(cfg.predictors, model=model)
    if cfg.sparse:
        apply(model, cfg.sparsity, predictors=predictors)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = build_scheduler(optimizer, cfg.lr_schedule, cfg.warmup_steps, cfg.steps)

    start = 0
    if ckpt is not None:
        load_trainable_state(model, ckpt["trainable"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        restore_rng_state(ckpt["rng"])
        start = ckpt["step"]
    result = FinetuneResult(out, out / "adapter", start_step=start)
    say = print if cfg.progress else log.info
    n_train = sum(p.numel() for p in params)
    say(
        f"lemo finetune: {Path(model_dir).name} on {device} ({str(dtype).removeprefix('torch.')}), {len(examples)} rows "
        f"of {cfg.seq_len} tokens from {source}, {n_train / 1e6:.2f}M trainable, "
        f"token elimination {'on' if cfg.sparse else 'off'}"
        + (", shifted sparse attention (S²)" if cfg.attention == "s2" else "")
        + (f", resuming at step {start}" if start else "")
    )
    if start == 0:
        result.ppl_before = _evaluate(model, held_ids, cfg, "before", say)
    used.save_yaml(out / "config.yaml")

    def save(step: int) -> None:
        state = {
            "trainable": trainable_state(model),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": capture_rng_state(),
            "config": used.to_dict(),
            "data_seed": cfg.seed,
        }
        save_checkpoint(ckpt_dir, step, state)

    model.train()
    # One draw of batch_size x grad_accum rows per optimizer step, so steps (and resume) count optimizer steps.
    batches = order.batches(start, rows)
    metrics = MetricsWriter(out / "metrics.jsonl", resume_step=start)
    reporters = Reporters(cfg.report_to, out, used.to_dict())
    with (
        stop_on_sigint() as stop,
        Progress(cfg.steps, initial=start, device=device, disable=not cfg.progress) as bar,
    ):
        for step in range(start, cfg.steps):
            idx = next(batches)
            micro = [
                collate([examples[i] for i in idx[j : j + cfg.batch_size]])
                for j in range(0, rows, cfg.batch_size)
            ]
            loss = _accumulate(model, micro, device)
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            kept = mean_kept_fraction(model) if cfg.sparse else 1.0
            tokens = sum(int(b["attention_mask"].sum()) for b in micro)
            record = bar.update(loss=loss, tokens=tokens, kept=kept)
            record["lr"] = scheduler.get_last_lr()[0]
            if predictors is not None:
                # The predictors' own cost, so users can check it stays a small share of the step.
                timing = predictors.timings()
                record["predictor_ms"] = timing["seconds"] * 1000
                record["predictor_param_mb"] = timing["param_bytes"] / 2**20
                predictors.reset_timings()
            metrics.write(record)
            reporters.log(record, step + 1)
            result.losses.append(loss)
            done = step + 1
            saved = (cfg.save_every and done % cfg.save_every == 0) or done == cfg.steps
            if saved or stop.requested:
                save(done)
            if stop.requested:
                metrics.close()
                reporters.close()
                command = f"lemo finetune --config {shlex.quote(str(out / 'config.yaml'))} --resume"
                raise TrainingInterrupted(done, command)
            if stop_after is not None and done >= stop_after and done < cfg.steps:
                metrics.close()
                reporters.close()
                return result
    metrics.close()
    reporters.close()
    save_adapter(model, result.adapter_dir)
    result.ppl_after = _evaluate(model, held_ids, cfg, "after", say)
    say(f"adapter saved to {result.adapter_dir}")
    return result


def _accumulate(model, micro: list[dict[str, torch.Tensor]], device: torch.device) -> float:
    """Forward and backward over the micro-batches of one optimizer step; returns the step's loss.

    Each micro-batch's mean loss is weighted by its share of the step's labelled tokens, so the gradient is
    that of one big batch (the model's loss is a mean over labelled tokens) whatever the padding. With one
    micro-batch the weight is exactly 1. A micro-batch without labels (its mean loss is NaN) is skipped when
    another one has labels.
    """
    counts = [int((b["labels"][:, 1:] != -100).sum()) for b in micro]
    total = sum(counts)
    if len(micro) == 1 or total == 0:  # nothing to weigh (with no labels at all, the NaN check reports it)
        return _train_step(model, micro[0], device, 1.0)
    return sum(_train_step(model, b, device, n / total) for b, n in zip(micro, counts, strict=True) if n)


def _train_step(model, batch: dict[str, torch.Tensor], device: torch.device, weight: float) -> float:
    t0 = time.perf_counter()
    inputs: dict[str, Any] = {
        "input_ids": batch["input_ids"].to(device),
        "labels": batch["labels"].to(device),
    }
    # All-ones masks and plain 0..T-1 positions are dropped so attention can take its causal fast path
    # instead of building a [T, T] mask.
    if not bool(batch["attention_mask"].all()):
        inputs["attention_mask"] = batch["attention_mask"].to(device)
    T = batch["input_ids"].shape[1]
    if not torch.equal(batch["position_ids"], torch.arange(T).expand_as(batch["position_ids"])):
        inputs["position_ids"] = batch["position_ids"].to(device)
    loss = model(**inputs).loss
    if not math.isfinite(loss.item()):
        raise FloatingPointError(
            "the loss is not finite; lower --lr, or use --dtype fp32 to check for overflow."
        )
    (loss * weight if weight != 1.0 else loss).backward()
    log.debug("micro-batch took %.2fs", time.perf_counter() - t0)
    return float(loss.item()) * weight
