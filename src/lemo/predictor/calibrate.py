"""Calibration: train one `BlockPredictor` per sparse layer against the frozen model's oracle block maps.

lemo-paper.md section 3.6, with these choices of ours:

- The model is frozen and dense. For each text chunk we collect, once, every sparse layer's normed input
  x [T, d] and its oracle map (`lemo.sparsity.scoring.oracle_map`, the same oracle training selects with);
  both are cached (on CPU, up to `cache_gb`) and reused across steps, because the frozen forward costs far
  more than a predictor step. Chunks beyond the cache are recomputed each time they come round.
- Loss per layer: SmoothL1 between the predicted map and the oracle map divided by its own maximum, over the
  lower triangle only (the upper one is zero on both sides by construction). Normalising per map makes layers
  and inputs comparable (raw block scores differ by orders of magnitude between layers), and only the ranking
  of blocks matters for selection. Optionally (`score_weight`) the same loss on the informativeness I_n that
  selection actually ranks.
- The loss is averaged over layers (the artifact sums; the mean keeps the learning rate independent of depth);
  each layer's loss is backpropagated on its own so that only one layer's graph is alive at a time.
- AdamW, linear warm-up then constant or cosine; elastic pruning of dead hidden units every `prune_every`
  steps with a decreasing threshold (the artifact: 0.80, 0.75, 0.70, ...); optimizer state is sliced along.
- The report gives per-layer recall (see `lemo.predictor.recall`) on held-out chunks when given, else on the
  training chunks (and says which), the loss curve, parameter counts and times.

Nothing here knows Hugging Face: the model is reached through the small `CalibrationModel` protocol, which
`lemo.integrations.transformers.calibration.HFCalibrationModel` implements.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lemo.config import PredictorConfig, PredictorTrainingConfig, SparsityConfig
from lemo.ops import informativeness
from lemo.predictor.model import PredictorSet
from lemo.predictor.recall import block_recall, mass_recall
from lemo.predictor.report import CalibrationReport, write_plots
from lemo.predictor.samples import CalibrationModel, Sample, SampleCache, collect_sample


def map_loss(pred: torch.Tensor, target: torch.Tensor, beta: float, score_weight: float) -> torch.Tensor:
    """SmoothL1 between a predicted map and the oracle map, both [nb, nb], on the max-normalised scale."""
    nb = target.shape[0]
    t = target / target.max().clamp_min(1e-12)  # [nb, nb] in [0, 1]
    rows, cols = torch.tril_indices(nb, nb, device=target.device)
    loss = F.smooth_l1_loss(pred[rows, cols], t[rows, cols], beta=beta)
    if score_weight:
        # I_n sums nb entries: divide by nb so that both terms live on the same [0, 1]-ish scale.
        loss = loss + score_weight * F.smooth_l1_loss(
            informativeness(pred) / nb, informativeness(t) / nb, beta=beta
        )
    return loss


def _lr_factor(step: int, cfg: PredictorTrainingConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    progress = (step - cfg.warmup_steps) / max(cfg.steps - cfg.warmup_steps, 1)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _make_optimizer(pset: PredictorSet, cfg: PredictorTrainingConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(pset.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)


def _prune_and_rebuild(
    pset: PredictorSet, opt: torch.optim.AdamW, threshold: float, cfg: PredictorTrainingConfig
) -> tuple[torch.optim.AdamW, int]:
    """Prune dead units; carry AdamW's moments over to the survivors. Returns (optimizer, params removed)."""
    before = pset.num_parameters()
    old = dict(pset.named_parameters())
    states = {name: opt.state.get(p, {}) for name, p in old.items()}
    slicings = pset.prune(threshold, cfg.min_units)
    if not slicings:
        return opt, 0
    new_opt = _make_optimizer(pset, cfg)
    new_opt.param_groups[0]["lr"] = opt.param_groups[0]["lr"]
    for name, p in pset.named_parameters():
        state = states.get(name)
        if not state:
            continue
        moved = {}
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == old[name].shape:
                for dim, idx in slicings.get(name, []):
                    value = value.index_select(dim, idx.to(value.device))
            moved[key] = value
        new_opt.state[p] = moved
    return new_opt, before - pset.num_parameters()


def _choose_plot_layers(layers: list[int], n: int) -> list[int]:
    if n <= 0:
        return []
    if n >= len(layers):
        return list(layers)
    idx = sorted({round(i * (len(layers) - 1) / max(n - 1, 1)) for i in range(n)})
    return [layers[i] for i in idx]


def evaluate_recall(
    pset: PredictorSet,
    model: CalibrationModel,
    chunks: Sequence[torch.Tensor],
    keep_ratio: dict[int, float] | float,
    sink_blocks: int = 1,
    local_blocks: int = 1,
    *,
    samples: Sequence[Sample] | None = None,
    cache_dir: str | Path | None = None,
) -> dict[int, dict[str, float]]:
    """Per layer: mean block recall and mass recall of `pset` against the oracle over `chunks` (ids [T])."""
    layers = pset.layers
    ratios = keep_ratio if isinstance(keep_ratio, dict) else dict.fromkeys(layers, float(keep_ratio))
    b = pset.config.block_size
    acc: dict[int, list[tuple[float, float]]] = {i: [] for i in layers}
    was_training = pset.training
    pset.eval()
    device = next(pset.parameters()).device
    store = {"device": device, "dtype": next(pset.parameters()).dtype}
    sources = list(samples) if samples is not None else [None] * len(chunks)
    for j, s in enumerate(sources):
        sample = s if s is not None else collect_sample(model, chunks[j], layers, b, store, cache_dir)
        for i in layers:
            with torch.no_grad():
                pred = pset[i].scores(sample.x[i].to(device))  # [nb]
            oracle = informativeness(sample.target[i])  # [nb]
            acc[i].append(
                (
                    block_recall(pred, oracle, ratios[i], sink_blocks, local_blocks),
                    mass_recall(pred, oracle, ratios[i], sink_blocks, local_blocks),
                )
            )
    pset.train(was_training)
    return {
        i: {
            "recall": sum(r for r, _ in v) / len(v) if v else float("nan"),
            "mass_recall": sum(m for _, m in v) / len(v) if v else float("nan"),
        }
        for i, v in acc.items()
    }


def train_predictors(
    model: CalibrationModel,
    chunks: Sequence[torch.Tensor],
    *,
    sparsity: SparsityConfig | None = None,
    config: PredictorTrainingConfig | None = None,
    holdout: Sequence[torch.Tensor] = (),
    output_dir: str | Path | None = None,
) -> PredictorSet:
    """Train predictors for the sparse layers of `model` on token chunks; returns the set (report attached).

    Args:
        model: a `CalibrationModel`. For HF models call `lemo.calibrate`, the entry point of calibration: it
            tokenises texts, builds the `CalibrationModel` and calls this.
        chunks: training token ids, each [T] (usually `config.seq_len` tokens).
        sparsity: sparse layers, block size, sink/local blocks and the keep ratios recall is measured at.
        holdout: token chunks never trained on, for the recall in the report.
        output_dir: when given, the predictors, `calibration.json` and PNG plots are written there.

    Returns:
        A `PredictorSet` whose `.report` is the `CalibrationReport`.
    """
    sparsity = sparsity or SparsityConfig()
    cfg = config or PredictorTrainingConfig()
    if not chunks:
        raise ValueError(
            "calibration needs at least one text chunk; pass more text (or a shorter --seq-len)."
        )
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    pset, layers, keep = _new_set(model, sparsity, cfg)
    params_initial = pset.num_parameters()
    chunks = list(chunks)[: cfg.max_chunks] if cfg.max_chunks else list(chunks)
    cache = SampleCache(model, chunks, layers, sparsity.block_size, cfg)
    _collect_up_front(cache, min(len(chunks), cfg.steps), cfg.progress)
    training = _train(pset, model, cache, layers, cfg)

    t_eval = time.perf_counter()
    holdout = list(holdout)
    recall_on, per_layer, eval_samples = _recall(pset, model, cache, holdout, keep, sparsity, cfg)
    eval_s = time.perf_counter() - t_eval
    pset.eval()

    tail = max(1, cfg.steps // 10)
    report = CalibrationReport(
        model=pset.identity.to_dict(),
        layers=layers,
        seq_len=cfg.seq_len,
        steps=cfg.steps,
        train_chunks=len(chunks),
        eval_chunks=len(holdout) if holdout else len(eval_samples or []),
        recall_on=recall_on,
        keep_ratio=keep,
        recall={i: v["recall"] for i, v in per_layer.items()},
        mass_recall={i: v["mass_recall"] for i, v in per_layer.items()},
        mean_recall=sum(v["recall"] for v in per_layer.values()) / len(per_layer),
        loss_curve=training.loss_curve,
        final_loss={i: sum(v[-tail:]) / len(v[-tail:]) for i, v in training.layer_losses.items()},
        params_initial=params_initial,
        params_final=pset.num_parameters(),
        param_bytes=pset.nbytes(),
        widths={i: {k: list(v) for k, v in w.items()} for i, w in pset.widths().items()},
        prune_events=training.prune_events,
        time_s={
            "collect": cache.collect_s,
            "train": training.train_s,
            "eval": eval_s,
            "total": time.perf_counter() - t_start,
        },
        config=cfg.to_dict(),
    )
    pset.report = report
    if output_dir is not None:
        _write_outputs(pset, Path(output_dir), cache, holdout, eval_samples, layers, cfg)
    return pset


def _new_set(
    model: CalibrationModel, sparsity: SparsityConfig, cfg: PredictorTrainingConfig
) -> tuple[PredictorSet, list[int], dict[int, float]]:
    """Untrained predictors for the sparse layers of `model`, on its device; the layers, and the keep ratio of
    each."""
    identity = model.identity()
    layers = sparsity.resolve_layers(model.num_layers)
    if not layers:
        raise ValueError(
            "sparse_layers resolves to no layer, so there is nothing to calibrate; use 'auto' or a list."
        )
    keep = sparsity.per_layer("keep_ratio", layers, model.num_layers)
    pcfg = PredictorConfig(
        d_model=identity.hidden_size,
        slice_dim=cfg.slice_dim or identity.head_dim,
        block_size=sparsity.block_size,
        hidden=cfg.hidden,
        mid=cfg.mid,
        pool=cfg.pool,
    )
    meta = {
        "seq_len": cfg.seq_len,
        "steps": cfg.steps,
        "keep_ratio": {str(k): v for k, v in keep.items()},
        "sink_blocks": sparsity.sink_blocks,
        "local_blocks": sparsity.local_blocks,
    }
    return PredictorSet(pcfg, layers, identity, meta=meta).to(model.device), layers, keep


def _collect_up_front(cache: SampleCache, n: int, progress: bool) -> None:
    """Collect up front while samples fit the cache: the training bar then shows training speed only."""
    bar = _progress(n, "collect", progress)
    for j in range(n):
        cache.sample(j)
        if bar is not None:
            bar.update(1)
        if j not in cache.cache:
            break  # the cache is full; later chunks are collected when they come round
    if bar is not None:
        bar.close()


@dataclass
class _Training:
    """What the training steps recorded."""

    loss_curve: list[float]
    layer_losses: dict[int, list[float]]
    prune_events: list[dict[str, Any]]
    train_s: float = 0.0  # seconds training, without the time spent collecting samples


def _train(
    pset: PredictorSet,
    model: CalibrationModel,
    cache: SampleCache,
    layers: list[int],
    cfg: PredictorTrainingConfig,
) -> _Training:
    """`cfg.steps` steps over the chunks in random order, pruning dead hidden units every `prune_every` steps."""
    opt = _make_optimizer(pset, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    order: list[int] = []
    run = _Training(loss_curve=[], layer_losses={i: [] for i in layers}, prune_events=[])
    threshold = cfg.prune_threshold
    prune_stop = int(cfg.prune_until * cfg.steps)
    pset.train()
    pset.track_deaths(cfg.prune_every > 0)
    bar = _progress(cfg.steps, "calibrate", cfg.progress)
    t_train = time.perf_counter()
    collect_before = cache.collect_s
    ema = None
    for step in range(cfg.steps):
        if not order:
            order = torch.randperm(len(cache.chunks), generator=gen).tolist()
        sample = cache.sample(order.pop())
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _lr_factor(step, cfg)
        step_loss = _step(pset, model, sample, layers, run.layer_losses, cfg)
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(pset.parameters(), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        run.loss_curve.append(step_loss)
        ema = step_loss if ema is None else 0.9 * ema + 0.1 * step_loss
        if cfg.prune_every > 0 and (step + 1) % cfg.prune_every == 0 and step + 1 <= prune_stop:
            opt, removed = _prune_and_rebuild(pset, opt, threshold, cfg)
            event = {"step": step + 1, "threshold": round(threshold, 4), "removed": removed}
            run.prune_events.append({**event, "params": pset.num_parameters()})
            threshold = max(threshold - cfg.prune_decay, 0.05)
        if bar is not None:
            elapsed = time.perf_counter() - t_train
            bar.set_postfix(loss=f"{ema:.4f}", s_per_step=f"{elapsed / (step + 1):.2f}", refresh=False)
            bar.update(1)
    if bar is not None:
        bar.close()
    pset.track_deaths(False)
    run.train_s = time.perf_counter() - t_train - (cache.collect_s - collect_before)
    return run


def _step(
    pset: PredictorSet,
    model: CalibrationModel,
    sample: Sample,
    layers: list[int],
    layer_losses: dict[int, list[float]],
    cfg: PredictorTrainingConfig,
) -> float:
    """Forward and backward of every layer's predictor on one sample; returns the mean loss over layers."""
    step_loss = 0.0
    for i in layers:
        x = sample.x[i].to(model.device)  # [T, d]
        pred = pset[i](x)  # [nb, nb]
        loss = map_loss(pred, sample.target[i].to(pred.device), cfg.huber_beta, cfg.score_weight)
        (loss / len(layers)).backward()  # one layer's graph at a time
        value = loss.item()
        layer_losses[i].append(value)
        step_loss += value / len(layers)
    return step_loss


def _recall(
    pset: PredictorSet,
    model: CalibrationModel,
    cache: SampleCache,
    holdout: list[torch.Tensor],
    keep: dict[int, float],
    sparsity: SparsityConfig,
    cfg: PredictorTrainingConfig,
) -> tuple[str, dict[int, dict[str, float]], list[Sample] | None]:
    """Per-layer recall on the held-out chunks, else on the first training chunks; returns which ones ("held-out"
    or "training"), the recall and the training samples it used (None on held-out chunks)."""
    if holdout:
        per_layer = evaluate_recall(
            pset, model, holdout, keep, sparsity.sink_blocks, sparsity.local_blocks, cache_dir=cfg.cache_dir
        )
        return "held-out", per_layer, None
    eval_samples = [cache.sample(j) for j in range(min(len(cache.chunks), 4))]
    per_layer = evaluate_recall(
        pset, model, [], keep, sparsity.sink_blocks, sparsity.local_blocks, samples=eval_samples
    )
    return "training", per_layer, eval_samples


def _write_outputs(
    pset: PredictorSet,
    out: Path,
    cache: SampleCache,
    holdout: list[torch.Tensor],
    eval_samples: list[Sample] | None,
    layers: list[int],
    cfg: PredictorTrainingConfig,
) -> None:
    """The predictors, their report as calibration.json and its plots (on the first held-out chunk, else on the
    first training one), in `out`."""
    report = pset.report
    pset.save(out)
    plot_sample = cache.collect(holdout[0]) if holdout else (eval_samples or [cache.sample(0)])[0]
    report.plots = write_plots(pset, plot_sample, _choose_plot_layers(layers, cfg.plot_layers), report, out)
    report.save(out / "calibration.json")


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm  # imported only when a bar is shown

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)
