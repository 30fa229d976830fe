"""The fine-tuning loop behind `lemo finetune`: LoRA (+ token elimination) on long rows, resumable.

Order of work: resolve the model and data, wrap with LoRA, apply lemo, optionally resume, evaluate held-out
perplexity, train with checkpoints every N steps, save the adapter and the run config, evaluate again.
Under torchrun the same loop runs on every rank, with the model sharded by FSDP2 after `apply`: what differs
between one process and an FSDP2 job is behind the strategy object of strategy.py (distributed.py below it).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lemo.assets import austen_texts, smollm2_dir
from lemo.config import FinetuneConfig
from lemo.integrations.liger import LIGER_INSTALL, apply_liger, liger_runs_here, require_liger
from lemo.integrations.liger import SUPPORTED as LIGER_SUPPORTED
from lemo.integrations.peft import add_lora
from lemo.integrations.transformers import apply, enable_shifted_sparse_attention, set_step, stats
from lemo.integrations.transformers.calibration import load_predictors
from lemo.integrations.transformers.loading import check_model_dir, enable_gradient_checkpointing, load_model
from lemo.train import distributed
from lemo.train.checks import RunData, check_config, check_model, load_run_data
from lemo.train.data import DataOrder, Example, collate
from lemo.train.distributed import Dist
from lemo.train.interrupt import TrainingInterrupted, stop_on_sigint
from lemo.train.launch import launch, wants_launch
from lemo.train.measures import evaluate_heldout, kept_fractions
from lemo.train.next_steps import kept_line, next_steps
from lemo.train.preflight import explain_out_of_memory, first_step_note, preflight
from lemo.train.progress import MetricsWriter, Progress
from lemo.train.reporting import Reporters, Silent
from lemo.train.run_safety import OutputClaim, check_resume_compatible
from lemo.train.schedule import build_scheduler
from lemo.train.strategy import Strategy, strategy_for
from lemo.utils.device import resolve_device
from lemo.utils.perplexity import PerplexityResult

log = logging.getLogger(__name__)


@dataclass
class FinetuneResult:
    output_dir: Path
    adapter_dir: Path
    losses: list[float] = field(default_factory=list)
    ppl_before: list[PerplexityResult] = field(default_factory=list)
    ppl_after: list[PerplexityResult] = field(default_factory=list)
    start_step: int = 0


def finetune(cfg: FinetuneConfig, *, stop_after: int | None = None) -> FinetuneResult:
    """Run a fine-tune as described by `cfg`. `stop_after` ends the run early after that many steps
    (as a kill would, but cleanly); used to test resuming. Under torchrun, every rank calls this; with
    --nproc N above 1 (and no torchrun yet), this starts torchrun on N ranks and waits for it."""
    if wants_launch(cfg):
        return launch(cfg)
    ctx, device_name = distributed.init(cfg.device, cfg.dist_timeout)
    try:
        with distributed.quiet_unless_main(ctx), distributed.explain_collective_errors(ctx):
            result = _finetune(cfg, ctx, device_name, stop_after)
        distributed.finish(ctx)
        return result
    finally:
        distributed.close(ctx)


def _finetune(cfg: FinetuneConfig, ctx: Dist, device_name: str, stop_after: int | None) -> FinetuneResult:
    device, dtype = resolve_device(device_name, cfg.dtype)
    check_config(cfg)  # before the output folder is touched: a bad argument leaves nothing behind
    if cfg.liger:
        require_liger()  # the missing extra is named before anything loads
    strategy = strategy_for(ctx, device)
    # Rank 0 alone touches the output folder, and holds its lock until the run ends however it ends; when it
    # fails there, every rank stops with its message instead of waiting for it until the timeout.
    claim = OutputClaim(Path(cfg.output_dir), resume=cfg.resume, overwrite=cfg.overwrite)
    strategy.run_on_main(claim.acquire)
    try:
        return _run(cfg, strategy, dtype, stop_after)
    finally:
        claim.release()  # also removes the folder when the run failed before writing anything in it


@dataclass
class _Setup:
    """What a run resolved and checked before any weight loads."""

    model_dir: str
    used: FinetuneConfig  # what this run really uses (config.yaml and the checkpoints record it)
    plan: Any  # the memory plan (--plan), or None
    ckpt: dict[str, Any] | None  # the checkpoint to resume from
    data: RunData
    order: DataOrder


@dataclass
class _Run:
    """A run in training: its settings, model, optimizer and what it has produced so far."""

    cfg: FinetuneConfig
    strategy: Strategy
    setup: _Setup
    model: Any
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    predictors: Any
    result: FinetuneResult
    say: Callable[..., Any]


def _run(
    cfg: FinetuneConfig, strategy: Strategy, dtype: torch.dtype, stop_after: int | None
) -> FinetuneResult:
    setup = _prepare(cfg, strategy, dtype)
    model, predictors = _build_model(setup.used, setup.model_dir, strategy, dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = build_scheduler(optimizer, cfg.lr_schedule, cfg.warmup_steps, cfg.steps)
    start = strategy.restore(setup.ckpt, model, optimizer, scheduler, cfg.seed)
    out = Path(cfg.output_dir)
    result = FinetuneResult(out, out / "adapter", start_step=start)
    say = (print if cfg.progress else log.info) if strategy.is_main else (lambda *_: None)
    run = _Run(cfg, strategy, setup, model, params, optimizer, scheduler, predictors, result, say)
    _announce(run, dtype, start)
    if start == 0:
        result.ppl_before = evaluate_heldout(model, setup.data.held_ids, cfg, "before", say)
    if strategy.is_main:
        setup.used.save_yaml(out / "config.yaml")
    kept = _train(run, start, stop_after)
    if kept is None:  # stopped early by stop_after
        return result
    return _finish(run, kept)


def _prepare(cfg: FinetuneConfig, strategy: Strategy, dtype: torch.dtype) -> _Setup:
    """Fill the caches, check the model, plan the memory, find the checkpoint and read the data."""
    # Rank 0 fills the caches first (model conversion, Austen download).
    if not cfg.model:
        strategy.run_on_main(smollm2_dir)
    if not cfg.data:
        strategy.run_on_main(austen_texts)
    model_dir = cfg.model or smollm2_dir()
    check_model_dir(model_dir, alternative="leave --model out to use the embedded SmolLM2-135M-Instruct")
    check_model(cfg, Path(model_dir))
    used = dataclasses.replace(
        cfg,
        model=str(model_dir),
        dtype="bf16" if dtype == torch.bfloat16 else "fp32",
        device=str(strategy.device),
        liger=_use_liger(cfg, Path(model_dir), strategy.device),
    )
    # Before any weight loads: refuse what cannot fit.
    plan = preflight(used, strategy.device) if cfg.plan else None
    ckpt = _resume_point(cfg, strategy, used)
    data = load_run_data(cfg, Path(model_dir), strategy.world_size)  # the last check before the weights load
    return _Setup(model_dir, used, plan, ckpt, data, DataOrder(len(data.examples), seed=cfg.seed))


def _use_liger(cfg: FinetuneConfig, model_dir: Path, device: torch.device) -> bool:
    """--liger as given, or unset: whether Liger runs here (`liger_runs_here`), said in the log either way."""
    if cfg.liger is not None:
        return cfg.liger
    model_type = json.loads((model_dir / "config.json").read_text()).get("model_type", "")
    on = liger_runs_here(model_type, device, cfg.attention)
    if on:
        log.info("using Liger-Kernel's fused kernels (installed, on a GPU); --no-liger turns them off")
    elif device.type == "cuda" and model_type in LIGER_SUPPORTED:
        log.info("Liger-Kernel is not installed: %s makes lemo faster and smaller on this GPU", LIGER_INSTALL)
    return on


def _resume_point(cfg: FinetuneConfig, strategy: Strategy, used: FinetuneConfig) -> dict[str, Any] | None:
    """With --resume, the checkpoint to continue from, checked against this run (None without one)."""
    if not cfg.resume:
        return None
    ckpt_dir = Path(cfg.output_dir) / "checkpoints"
    ckpt = strategy.read_checkpoint(ckpt_dir)
    if ckpt is None:
        log.warning("--resume: no checkpoint in %s; starting from step 0.", ckpt_dir)
        return None
    strategy.check_checkpoint(ckpt)
    check_resume_compatible(ckpt["config"], used.to_dict(), FinetuneConfig().to_dict())
    return ckpt


def _build_model(cfg: FinetuneConfig, model_dir: str, strategy: Strategy, dtype: torch.dtype):
    """The model to train: loaded, with LoRA, the training options, lemo applied, and wrapped for the job;
    returns it and the predictors (None unless --scorer predictor)."""
    # Seeded here, after smollm2_dir(): a first-run model conversion draws random numbers (and again before
    # LoRA init below), so a run's result does not depend on whether the conversion ran.
    torch.manual_seed(cfg.seed)
    model, _ = load_model(
        model_dir,
        dtype=dtype,
        device=strategy.device,
        rope_scaling=cfg.rope_scaling,
        rope_factor=cfg.rope_factor,
    )

    torch.manual_seed(cfg.seed)
    lora = cfg.lora
    model = add_lora(
        model, lora.rank, lora.alpha, lora.dropout, lora.targets, lora.train_norms, lora.train_embeddings
    )
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    model.config.use_cache = False
    if cfg.attention == "s2":
        enable_shifted_sparse_attention(model)  # after LoRA, so it sees the final model; training only
    if cfg.liger:
        # Before lemo.apply: lemo's loss forward wraps Liger's, its layers call Liger's modules.
        apply_liger(model)
    predictors = None
    if cfg.sparse and cfg.sparsity.scorer == "predictor":  # check_config made sure --predictors is set
        predictors = load_predictors(cfg.predictors, model=model)
    if cfg.sparse:
        apply(model, strategy.sparsity(cfg.sparsity), predictors=predictors)
    return strategy.wrap(model), predictors


def _announce(run: _Run, dtype: torch.dtype, start: int) -> None:
    """The run's first line (and a note on the first step at long T)."""
    cfg, setup = run.cfg, run.setup
    n_train = sum(p.numel() for p in run.params)  # global counts: a DTensor's numel is its full size
    run.say(
        f"lemo finetune: {Path(setup.model_dir).name} on {run.strategy.where()} "
        f"({str(dtype).removeprefix('torch.')}), "
        f"{len(setup.data.examples)} rows of {cfg.seq_len} tokens from {setup.data.source}, "
        f"{n_train / 1e6:.2f}M trainable, token elimination {'on' if cfg.sparse else 'off'}"
        + (", shifted sparse attention (S²)" if cfg.attention == "s2" else "")
        + (f", resuming at step {start}" if start else "")
    )
    note = first_step_note(cfg, run.strategy.device)
    if note:
        run.say(note)


def _train(run: _Run, start: int, stop_after: int | None) -> tuple[float, float | None] | None:
    """Optimizer steps from `start` to --steps, with checkpoints; returns the last step's kept fractions, or None
    when `stop_after` ended the run early. Raises TrainingInterrupted after a Ctrl-C (once its checkpoint is saved)."""
    cfg, strategy, result = run.cfg, run.strategy, run.result
    out = result.output_dir
    run.model.train()
    # One draw of batch_size x grad_accum x ranks rows per optimizer step, so steps (and resume) count
    # optimizer steps; each rank trains on its own contiguous slice of the draw.
    batches = run.setup.order.batches(start, cfg.batch_size * cfg.grad_accum * strategy.world_size)
    main = strategy.is_main
    metrics = MetricsWriter(out / "metrics.jsonl", resume_step=start) if main else Silent()
    reporters = Reporters(cfg.report_to, out, run.setup.used.to_dict()) if main else Silent()
    kept: tuple[float, float | None] = (1.0, None)
    with (
        stop_on_sigint() as stop,
        explain_out_of_memory(run.setup.plan, strategy.device),
        Progress(
            cfg.steps, initial=start, device=strategy.device, disable=not (cfg.progress and main)
        ) as bar,
    ):
        for step in range(start, cfg.steps):
            if cfg.sparse:  # the last `dense_tail` steps keep every block
                set_step(run.model, step, cfg.steps)
            loss, kept, record = _step(run, next(batches), bar)
            metrics.write(record)
            reporters.log(record, step + 1)
            result.losses.append(loss)
            done = step + 1
            saved = (cfg.save_every and done % cfg.save_every == 0) or done == cfg.steps
            strategy.share_stop(stop)
            if saved or stop.requested:
                config = run.setup.used.to_dict()
                strategy.save(
                    out / "checkpoints", done, run.model, run.optimizer, run.scheduler, config, cfg.seed
                )
            if stop.requested:
                metrics.close()
                reporters.close()
                command = f"lemo finetune --config {shlex.quote(str(out / 'config.yaml'))} --resume"
                raise TrainingInterrupted(done, command)
            if stop_after is not None and done >= stop_after and done < cfg.steps:
                metrics.close()
                reporters.close()
                return None
    metrics.close()
    reporters.close()
    return kept


def _step(
    run: _Run, drawn: list[int], bar: Progress
) -> tuple[float, tuple[float, float | None], dict[str, Any]]:
    """One optimizer step on the rows `drawn` for it; returns its loss, kept fractions and metrics record."""
    cfg, strategy, examples = run.cfg, run.strategy, run.setup.data.examples
    rows = cfg.batch_size * cfg.grad_accum  # this rank's rows per step
    idx = DataOrder.shard(drawn, strategy.rank, strategy.world_size)
    micro = [
        collate([examples[i] for i in idx[j : j + cfg.batch_size]]) for j in range(0, rows, cfg.batch_size)
    ]
    loss = _step_loss(run, micro, drawn)
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(run.params, cfg.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    kept, kept_sparse = kept_fractions(run.model, cfg, strategy)
    tokens = int(strategy.total(sum(int(b["attention_mask"].sum()) for b in micro)))  # the whole job's tokens
    record = bar.update(loss=loss, tokens=tokens, kept=kept, kept_sparse=kept_sparse)
    record["lr"] = run.scheduler.get_last_lr()[0]
    if run.predictors is not None:
        # The predictors' own cost, so users can check it stays a small share of the step.
        timing = run.predictors.timings()
        record["predictor_ms"] = timing["seconds"] * 1000
        record["predictor_param_mb"] = timing["param_bytes"] / 2**20
        run.predictors.reset_timings()
    return loss, (kept, kept_sparse), record


def _step_loss(run: _Run, micro: list[dict[str, torch.Tensor]], drawn: list[int]) -> float:
    """Forward and backward over this rank's micro-batches; the job's step loss."""
    strategy = run.strategy
    if strategy.sharded:  # weights come from the labels of the whole draw, over all ranks
        total = _label_count([run.setup.data.examples[i] for i in drawn])
        return _accumulate_dist(run.model, micro, strategy.device, total, strategy.ctx)
    return _accumulate(run.model, micro, strategy.device)


def _finish(run: _Run, kept: tuple[float, float | None]) -> FinetuneResult:
    """Save the adapter, evaluate again and say what to do next."""
    cfg, model, result = run.cfg, run.model, run.result
    run.strategy.save_adapter(model, result.adapter_dir)
    result.ppl_after = evaluate_heldout(model, run.setup.data.held_ids, cfg, "after", run.say)
    run.say(f"adapter saved to {result.adapter_dir}")
    kept_note = None
    if cfg.sparse and result.losses:  # what the bar's kept=... meant, from the last step
        n_layers = model.config.num_hidden_layers
        kept_note = kept_line(*kept, n_layers, len(stats(model)), cfg.sparsity.keep_ratio)
    for line in next_steps(cfg, result.output_dir, result.adapter_dir, kept_note):
        run.say(line)
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


def _label_count(rows: list[Example]) -> int:
    """Labelled tokens of rows (a row's first label is never scored: the loss shifts by one)."""
    return sum(int((e.labels[1:] != -100).sum()) for e in rows)


def _accumulate_dist(
    model, micro: list[dict[str, torch.Tensor]], device: torch.device, total: int, ctx: Dist
) -> float:
    """`_accumulate` for one rank of an FSDP2 job: each micro-batch's mean loss is weighted by its share of
    the *global* batch's `total` labelled tokens, so the gradients summed over ranks (divide factor 1, see
    `distributed.shard`) are one big batch's; returns the global step loss (summed over ranks).

    Every micro-batch runs, even one without labels (it gets a stand-in label and weight 0): each forward and
    backward is a collective, and a rank that skipped one would leave the others waiting.
    """
    local = 0.0
    for b in micro:
        n = int((b["labels"][:, 1:] != -100).sum())
        if n == 0 and total > 0:
            labels = b["labels"].clone()  # [B, T]
            labels[0, -1] = b["input_ids"][0, -1]
            b = {**b, "labels": labels}
        local += _train_step(model, b, device, n / total if total else 1.0, ctx)
    return distributed.all_sum(local, ctx, str(device))


def _train_step(
    model, batch: dict[str, torch.Tensor], device: torch.device, weight: float, ctx: Dist | None = None
) -> float:
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
    bad = not math.isfinite(loss.item())
    if ctx is not None and ctx.enabled:  # all ranks stop together, or the healthy ones wait in backward
        bad = distributed.any_rank(bad, ctx, str(device))
    if bad:
        raise FloatingPointError(
            "the loss is not finite; lower --lr, or use --dtype fp32 to check for overflow."
        )
    # weight 0 (a stand-in micro-batch) still runs backward: its reduce-scatter is a collective.
    (loss * weight if weight != 1.0 else loss).backward()
    log.debug("micro-batch took %.2fs", time.perf_counter() - t0)
    return float(loss.item()) * weight
