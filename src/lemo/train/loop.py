"""The fine-tuning loop behind `lemo finetune`: LoRA (+ token elimination) on long rows, resumable.

Order of work: resolve the model and data, wrap with LoRA, apply lemo, optionally resume, evaluate held-out
perplexity, train with checkpoints every N steps, save the adapter and the run config, evaluate again.
Under torchrun the same loop runs on every rank, with the model sharded by FSDP2 after `apply` (distributed.py).
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
from lemo.integrations.liger import apply_liger, require_liger
from lemo.integrations.peft import add_lora, load_trainable_state, save_adapter, trainable_state
from lemo.integrations.transformers import apply, enable_shifted_sparse_attention, mean_kept_fraction, stats
from lemo.integrations.transformers.calibration import load_predictors
from lemo.integrations.transformers.loading import check_model_dir, enable_gradient_checkpointing, load_model
from lemo.train import distributed
from lemo.train.checkpoint import capture_rng_state, load_checkpoint, restore_rng_state, save_checkpoint
from lemo.train.checks import check_config, check_model, load_run_data
from lemo.train.config import FinetuneConfig
from lemo.train.data import DataOrder, Example, collate
from lemo.train.distributed import Dist
from lemo.train.distributed_checkpoint import check_world_size, load_sharded, read_meta, save_sharded
from lemo.train.interrupt import TrainingInterrupted, stop_on_sigint
from lemo.train.launch import launch, wants_launch
from lemo.train.next_steps import kept_line, next_steps
from lemo.train.preflight import explain_out_of_memory, preflight
from lemo.train.progress import MetricsWriter, Progress
from lemo.train.reporting import Reporters
from lemo.train.run_safety import OutputClaim, check_resume_compatible
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


def first_step_note(cfg: FinetuneConfig, device: torch.device) -> str | None:
    """What to expect of the first step at long T on a GPU: lemo's Triton attention tunes itself once per length
    class, and at long T each candidate it times is a long kernel run."""
    sparse = cfg.sparse and cfg.sparsity.sparse_layers not in ("none", [])
    if device.type != "cuda" or not sparse or cfg.sparsity.backend == "reference" or cfg.seq_len < 65536:
        return None
    return (
        "note: the first step also compiles and tunes lemo's kernels for this length; at 256K tokens on an H200 "
        "it took about 3 minutes longer than later steps (docs/longest.md). The ETA settles after it."
    )


class _Null:
    """Metrics and reporters on ranks other than 0: they write nothing."""

    def write(self, *_: Any) -> None: ...
    def log(self, *_: Any) -> None: ...
    def close(self) -> None: ...


def finetune(cfg: FinetuneConfig, *, stop_after: int | None = None) -> FinetuneResult:
    """Run a fine-tune as described by `cfg`. `stop_after` ends the run early after that many steps
    (as a kill would, but cleanly); used to test resuming. Under torchrun, every rank calls this; with
    --nproc N above 1 (and no torchrun yet), this starts torchrun on N ranks and waits for it."""
    if wants_launch(cfg):
        return launch(cfg)
    ctx, device_name = distributed.init(cfg.device, cfg.dist_timeout)
    try:
        with distributed.quiet_unless_main(ctx), distributed.explain_collective_errors(ctx):
            return _finetune(cfg, ctx, device_name, stop_after)
    finally:
        distributed.close(ctx)


def _finetune(cfg: FinetuneConfig, ctx: Dist, device_name: str, stop_after: int | None) -> FinetuneResult:
    device, dtype = resolve_device(device_name, cfg.dtype)
    check_config(cfg)  # before the output folder is touched: a bad argument leaves nothing behind
    if cfg.liger:
        require_liger()  # the missing extra is named before anything loads
    # Rank 0 alone touches the output folder, and holds its lock until the run ends however it ends; when it
    # fails there, every rank stops with its message instead of waiting for it until the timeout.
    claim = OutputClaim(Path(cfg.output_dir), resume=cfg.resume, overwrite=cfg.overwrite)
    distributed.run_on_main(ctx, str(device), claim.acquire)
    try:
        return _run(cfg, ctx, device, dtype, stop_after)
    finally:
        claim.release()  # also removes the folder when the run failed before writing anything in it


def _run(
    cfg: FinetuneConfig, ctx: Dist, device: torch.device, dtype: torch.dtype, stop_after: int | None
) -> FinetuneResult:
    out = Path(cfg.output_dir)
    # Rank 0 fills the caches first (model conversion, Austen download).
    if not cfg.model:
        distributed.run_on_main(ctx, str(device), smollm2_dir)
    if not cfg.data:
        distributed.run_on_main(ctx, str(device), austen_texts)
    model_dir = cfg.model or smollm2_dir()
    check_model_dir(model_dir, alternative="leave --model out to use the embedded SmolLM2-135M-Instruct")
    check_model(cfg, Path(model_dir))
    # What this run really uses (config.yaml and the checkpoints record it; resume compares against it).
    used = dataclasses.replace(
        cfg, model=str(model_dir), dtype="bf16" if dtype == torch.bfloat16 else "fp32", device=str(device)
    )
    plan = preflight(used, device) if cfg.plan else None  # before any weight loads: refuse what cannot fit
    ckpt_dir = out / "checkpoints"
    ckpt = None
    if cfg.resume:
        # Sharded (torchrun) checkpoints are read after the model is sharded; here only their meta.json.
        ckpt = read_meta(ckpt_dir) if ctx.enabled else load_checkpoint(ckpt_dir)
    if cfg.resume and ckpt is None:
        log.warning("--resume: no checkpoint in %s; starting from step 0.", ckpt_dir)
    if ckpt is not None:
        if ctx.enabled:
            check_world_size(ckpt, ctx)
        check_resume_compatible(ckpt["config"], used.to_dict(), FinetuneConfig().to_dict())
    data = load_run_data(cfg, Path(model_dir), ctx.world_size)  # the last check before the weights load
    examples, held_ids = data.examples, data.held_ids
    order = DataOrder(len(examples), seed=cfg.seed)
    rows = cfg.batch_size * cfg.grad_accum  # this rank's rows per step
    # Seeded here, after smollm2_dir(): a first-run model conversion draws random numbers (and again before
    # LoRA init below), so a run's result does not depend on whether the conversion ran.
    torch.manual_seed(cfg.seed)
    model, _ = load_model(
        model_dir, dtype=dtype, device=device, rope_scaling=cfg.rope_scaling, rope_factor=cfg.rope_factor
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
        apply_liger(
            model
        )  # before lemo.apply: lemo's loss forward wraps Liger's, its layers call Liger's modules
    predictors = None
    if cfg.sparse and cfg.sparsity.scorer == "predictor":  # check_config made sure --predictors is set
        predictors = load_predictors(cfg.predictors, model=model)
    if cfg.sparse:
        sparsity = cfg.sparsity
        if ctx.enabled and sparsity.inplace_residual:
            # FSDP2 hands each layer its input through an autograd Function, and autograd forbids updating
            # such a tensor in place; the out-of-place residual add computes the same numbers.
            sparsity = dataclasses.replace(sparsity, inplace_residual=False)
        apply(model, sparsity, predictors=predictors)
    if ctx.enabled:
        # After LoRA and apply, which only set attributes and hooks that the FSDP class swap keeps.
        distributed.shard(model, ctx, str(device))

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = build_scheduler(optimizer, cfg.lr_schedule, cfg.warmup_steps, cfg.steps)

    start = 0
    if ctx.enabled:
        # Each rank its own random stream (random blocks, dropout) so ranks do not draw alike; a resume
        # restores each rank's stream from its checkpoint.
        torch.manual_seed(cfg.seed + ctx.rank)
    if ckpt is not None and ctx.enabled:
        start = load_sharded(ckpt, model, optimizer, scheduler, ctx, str(device))
    elif ckpt is not None:
        load_trainable_state(model, ckpt["trainable"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        restore_rng_state(ckpt["rng"])
        start = ckpt["step"]
    result = FinetuneResult(out, out / "adapter", start_step=start)
    say = (print if cfg.progress else log.info) if ctx.is_main else (lambda *_: None)
    n_train = sum(p.numel() for p in params)  # global counts: a DTensor's numel is its full size
    where = f"{ctx.world_size} ranks ({ctx.backend}, FSDP2)" if ctx.enabled else str(device)
    say(
        f"lemo finetune: {Path(model_dir).name} on {where} ({str(dtype).removeprefix('torch.')}), {len(examples)} rows "
        f"of {cfg.seq_len} tokens from {data.source}, {n_train / 1e6:.2f}M trainable, "
        f"token elimination {'on' if cfg.sparse else 'off'}"
        + (", shifted sparse attention (S²)" if cfg.attention == "s2" else "")
        + (f", resuming at step {start}" if start else "")
    )
    note = first_step_note(cfg, device)
    if note:
        say(note)
    if start == 0:
        result.ppl_before = _evaluate(model, held_ids, cfg, "before", say)
    if ctx.is_main:
        used.save_yaml(out / "config.yaml")

    def save(step: int) -> None:
        if ctx.enabled:
            save_sharded(ckpt_dir, step, model, optimizer, scheduler, used.to_dict(), ctx)
            return
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
    # One draw of batch_size x grad_accum x ranks rows per optimizer step, so steps (and resume) count
    # optimizer steps; each rank trains on its own contiguous slice of the draw.
    batches = order.batches(start, rows * ctx.world_size)
    main = ctx.is_main
    metrics = MetricsWriter(out / "metrics.jsonl", resume_step=start) if main else _Null()
    reporters = Reporters(cfg.report_to, out, used.to_dict()) if main else _Null()
    with (
        stop_on_sigint() as stop,
        explain_out_of_memory(plan, device),
        Progress(cfg.steps, initial=start, device=device, disable=not (cfg.progress and main)) as bar,
    ):
        for step in range(start, cfg.steps):
            drawn = next(batches)
            idx = DataOrder.shard(drawn, ctx.rank, ctx.world_size)
            micro = [
                collate([examples[i] for i in idx[j : j + cfg.batch_size]])
                for j in range(0, rows, cfg.batch_size)
            ]
            if ctx.enabled:
                loss = _accumulate_dist(model, micro, device, _label_count([examples[i] for i in drawn]), ctx)
            else:
                loss = _accumulate(model, micro, device)
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            kept, kept_sparse = _kept(model, cfg, ctx, device)
            tokens = sum(int(b["attention_mask"].sum()) for b in micro)
            if ctx.enabled:  # the whole job's tokens
                tokens = int(distributed.all_sum(tokens, ctx, str(device)))
            record = bar.update(loss=loss, tokens=tokens, kept=kept, kept_sparse=kept_sparse)
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
            if ctx.enabled:  # a Ctrl-C seen by one rank stops all of them at the same step
                stop.requested = distributed.any_rank(stop.requested, ctx, str(device))
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
    if ctx.enabled:
        distributed.save_adapter(model, result.adapter_dir, ctx)
    else:
        save_adapter(model, result.adapter_dir)
    result.ppl_after = _evaluate(model, held_ids, cfg, "after", say)
    say(f"adapter saved to {result.adapter_dir}")
    kept_note = None
    if cfg.sparse and result.losses:  # what the bar's kept=... meant, from the last step
        n_layers = model.config.num_hidden_layers
        kept_note = kept_line(kept, kept_sparse, n_layers, len(stats(model)), cfg.sparsity.keep_ratio)
    for line in next_steps(cfg, out, result.adapter_dir, kept_note):
        say(line)
    return result


def _kept(model, cfg: FinetuneConfig, ctx: Dist, device: torch.device) -> tuple[float, float | None]:
    """The last step's kept fraction over all layers (dense ones count as 1), and over the sparse layers alone
    (None without any); under torchrun, the ranks' means."""
    if not cfg.sparse:
        return 1.0, None
    per_layer = [s["kept_fraction"] for s in stats(model).values()]
    kept, sparse = mean_kept_fraction(model), (sum(per_layer) / len(per_layer) if per_layer else None)
    if ctx.enabled:
        kept = distributed.all_sum(kept, ctx, str(device)) / ctx.world_size
        if sparse is not None:  # every rank has the same sparse layers, so all of them take this branch
            sparse = distributed.all_sum(sparse, ctx, str(device)) / ctx.world_size
    return kept, sparse


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
