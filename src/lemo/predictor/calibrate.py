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
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lemo.config import SparsityConfig
from lemo.ops import informativeness
from lemo.predictor.config import PredictorConfig, PredictorTrainingConfig
from lemo.predictor.model import PredictorSet
from lemo.predictor.recall import block_recall, mass_recall
from lemo.predictor.report import CalibrationReport, write_plots
from lemo.predictor.samples import CalibrationModel, Sample, collect_sample


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


def calibrate(
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
        model: a `CalibrationModel` (for HF models use `lemo.integrations.transformers.calibration.calibrate`,
            which tokenises texts and builds one).
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
    identity = model.identity()
    layers = sparsity.resolve_layers(model.num_layers)
    if not layers:
        raise ValueError(
            "sparse_layers resolves to no layer, so there is nothing to calibrate; use 'auto' or a list."
        )
    keep = sparsity.per_layer("keep_ratio", layers, model.num_layers)
    b = sparsity.block_size
    pcfg = PredictorConfig(
        d_model=identity.hidden_size,
        slice_dim=cfg.slice_dim or identity.head_dim,
        block_size=b,
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
    pset = PredictorSet(pcfg, layers, identity, meta=meta).to(model.device)
    params_initial = pset.num_parameters()
    chunks = list(chunks)[: cfg.max_chunks] if cfg.max_chunks else list(chunks)

    # ---- cache of samples: collected lazily, kept while they fit in cache_gb
    store = {"device": torch.device("cpu"), "dtype": getattr(torch, cfg.cache_dtype)}
    cache: dict[int, Sample] = {}
    cache_bytes = 0
    collect_s = 0.0

    def sample_of(j: int) -> Sample:
        nonlocal cache_bytes, collect_s
        if j in cache:
            return cache[j]
        t0 = time.perf_counter()
        s = collect_sample(model, chunks[j], layers, b, store, cfg.cache_dir)
        collect_s += time.perf_counter() - t0
        nbytes = sum(t.numel() * t.element_size() for t in [*s.x.values(), *s.target.values()])
        if cache_bytes + nbytes <= cfg.cache_gb * 1024**3:
            cache[j] = s
            cache_bytes += nbytes
        return s

    # Collect up front while samples fit the cache: the training bar then shows training speed only.
    n_pre = min(len(chunks), cfg.steps)
    bar = _progress(n_pre, "collect", cfg.progress)
    for j in range(n_pre):
        sample_of(j)
        if bar is not None:
            bar.update(1)
        if j not in cache:
            break  # the cache is full; later chunks are collected when they come round
    if bar is not None:
        bar.close()

    opt = _make_optimizer(pset, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    order: list[int] = []
    loss_curve: list[float] = []
    layer_losses: dict[int, list[float]] = {i: [] for i in layers}
    prune_events: list[dict[str, Any]] = []
    threshold = cfg.prune_threshold
    prune_stop = int(cfg.prune_until * cfg.steps)
    pset.train()
    pset.track_deaths(cfg.prune_every > 0)
    bar = _progress(cfg.steps, "calibrate", cfg.progress)
    t_train = time.perf_counter()
    collect_before = collect_s
    ema = None
    for step in range(cfg.steps):
        if not order:
            order = torch.randperm(len(chunks), generator=gen).tolist()
        sample = sample_of(order.pop())
        for g in opt.param_groups:
            g["lr"] = cfg.lr * _lr_factor(step, cfg)
        step_loss = 0.0
        for i in layers:
            x = sample.x[i].to(model.device)  # [T, d]
            pred = pset[i](x)  # [nb, nb]
            loss = map_loss(pred, sample.target[i].to(pred.device), cfg.huber_beta, cfg.score_weight)
            (loss / len(layers)).backward()  # one layer's graph at a time
            value = loss.item()
            layer_losses[i].append(value)
            step_loss += value / len(layers)
        if cfg.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(pset.parameters(), cfg.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss_curve.append(step_loss)
        ema = step_loss if ema is None else 0.9 * ema + 0.1 * step_loss
        if cfg.prune_every > 0 and (step + 1) % cfg.prune_every == 0 and step + 1 <= prune_stop:
            opt, removed = _prune_and_rebuild(pset, opt, threshold, cfg)
            prune_events.append(
                {
                    "step": step + 1,
                    "threshold": round(threshold, 4),
                    "removed": removed,
                    "params": pset.num_parameters(),
                }
            )
            threshold = max(threshold - cfg.prune_decay, 0.05)
        if bar is not None:
            elapsed = time.perf_counter() - t_train
            bar.set_postfix(loss=f"{ema:.4f}", s_per_step=f"{elapsed / (step + 1):.2f}", refresh=False)
            bar.update(1)
    if bar is not None:
        bar.close()
    pset.track_deaths(False)
    train_s = time.perf_counter() - t_train - (collect_s - collect_before)

    # ---- recall
    t_eval = time.perf_counter()
    holdout = list(holdout)
    if holdout:
        recall_on = "held-out"
        per_layer = evaluate_recall(
            pset, model, holdout, keep, sparsity.sink_blocks, sparsity.local_blocks, cache_dir=cfg.cache_dir
        )
        eval_samples = None
    else:
        recall_on = "training"
        eval_samples = [sample_of(j) for j in range(min(len(chunks), 4))]
        per_layer = evaluate_recall(
            pset, model, [], keep, sparsity.sink_blocks, sparsity.local_blocks, samples=eval_samples
        )
    eval_s = time.perf_counter() - t_eval
    pset.eval()

    tail = max(1, cfg.steps // 10)
    report = CalibrationReport(
        model=identity.to_dict(),
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
        loss_curve=loss_curve,
        final_loss={i: sum(v[-tail:]) / len(v[-tail:]) for i, v in layer_losses.items()},
        params_initial=params_initial,
        params_final=pset.num_parameters(),
        param_bytes=pset.nbytes(),
        widths={i: {k: list(v) for k, v in w.items()} for i, w in pset.widths().items()},
        prune_events=prune_events,
        time_s={
            "collect": collect_s,
            "train": train_s,
            "eval": eval_s,
            "total": time.perf_counter() - t_start,
        },
        config=cfg.to_dict(),
    )
    pset.report = report
    if output_dir is not None:
        out = Path(output_dir)
        pset.save(out)
        plot_sample = (
            collect_sample(model, holdout[0], layers, b, store, cfg.cache_dir)
            if holdout
            else (eval_samples or [sample_of(0)])[0]
        )
        report.plots = write_plots(
            pset, plot_sample, _choose_plot_layers(layers, cfg.plot_layers), report, out
        )
        report.save(out / "calibration.json")
    return pset


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm  # imported only when a bar is shown

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)
