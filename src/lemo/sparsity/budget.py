"""Budgeted per-layer keep ratios: the most accurate per-layer sparsity that fits a token (or memory) budget.

The paper's Algorithm 1 tunes per-layer thresholds by gradient ascent on accuracy alone, which, as written,
drives every threshold down (keep everything). Ours states the trade-off explicitly:

    minimise   sum_l D_l(r_l)                         D_l: damage of layer l at keep ratio r_l
    subject to (1/L) sum_l C_l(r_l) <= target         C_l: kept-token fraction that r_l really gives
               r_l in grid

- **Damage** D_l(r) is measured on held-out text with the oracle (or a predictor) choosing the blocks: the
  relative squared error of the layer's attention-sublayer output against the dense one,
  ||o_sparse - o_dense||^2 / ||o_dense||^2, where eliminated rows contribute o_sparse = 0 (they skip the
  sublayer) and kept rows attend among kept tokens only, as the sparse layer does (docs/design.md section 1).
  Each layer is measured on the dense model's hidden states, in isolation: damages are treated as additive,
  which ignores how one layer's elimination shifts the next layer's input (first-order, like Algorithm 1).
- **Cost** C_l(r) is the kept-token fraction measured on the same text (ceil to whole blocks and the forced
  sink/local blocks make it a little above r), so the budget holds for what is actually kept, at the measured
  length; at other lengths it can differ by at most one block per layer.
- **Allocation** is solved exactly by dynamic programming over costs in units of `resolution` (a
  multiple-choice knapsack). Each cost is rounded *up* to whole units and the budget *down*, so the returned
  ratios satisfy the budget on the measured costs by construction, not approximately.

A memory budget is turned into a kept fraction with `fraction_for_memory` from two measured points (the
activation memory of token elimination is linear in the kept fraction; everything else is constant).

Why this lives in `lemo.sparsity` and not with the predictors: the search chooses `SparsityConfig` keep ratios,
and it measures with the same pieces as the training forward: blocks from any `BlockScorer` (the oracle by
default; predictors are just another scorer), selection by `select_by_ratio`, and the attention sublayer on the
kept rows through `AttentionParts.attend`. Nothing in it is specific to predictors. `lemo.predictor` re-exports
its names for code written before the move.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from lemo.config import SparsityConfig
from lemo.ops import blocks_to_tokens, select_by_ratio
from lemo.ops.select_blocks import forced_blocks
from lemo.sparsity.parts import LayerParts
from lemo.sparsity.scoring import BlockScorer, OracleScorer

DEFAULT_GRID = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class DenseModel(Protocol):
    """A frozen dense model seen layer by layer: what the budget search measures on (implemented for HF models
    in lemo.integrations.transformers.calibration; `lemo.predictor.CalibrationModel` adds what calibration needs)."""

    num_layers: int

    def layer_parts(self, index: int) -> LayerParts:
        """The parts of decoder layer `index` (projections, norms, attention settings)."""

    def normed_inputs(self, input_ids: torch.Tensor, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """Run the frozen dense model on input_ids [T]; return {layer: input_layernorm output [T, d]}."""

    def rotary(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [length, head_dim] at positions 0..length-1 (as the model computes them, scaling in)."""


def attention_output(
    parts: LayerParts, x: torch.Tensor, rows: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> torch.Tensor:
    """The attention sublayer's output [N, d] for kept rows [N] of x [T, d], attending among kept rows only.

    RoPE uses the rows' original positions (cos/sin [T, D]), as `sparse_layer_forward` does.
    """
    positions = rows if parts.attn.sliding_window is not None else None
    return parts.attn.attend(x[rows], cos[rows], sin[rows], [0, rows.numel()], positions=positions)  # [N, d]


@dataclass
class DamageTable:
    """Per layer and grid ratio: damage, realized kept-token fraction, equivalent relative threshold."""

    layers: list[int]
    grid: list[float]
    damage: dict[int, dict[float, float]]
    cost: dict[int, dict[float, float]]
    threshold: dict[int, dict[float, float]]
    seq_len: int
    chunks: int


def measure_damage(
    model: DenseModel,
    chunks: Sequence[torch.Tensor],
    layers: Sequence[int],
    grid: Sequence[float] = DEFAULT_GRID,
    *,
    block_size: int = 64,
    sink_blocks: int = 1,
    local_blocks: int = 1,
    scorer: BlockScorer | None = None,
    progress: bool = False,
) -> DamageTable:
    """Measure D_l(r), C_l(r) and the equivalent relative threshold on held-out token chunks [T] each.

    Args:
        scorer: who chooses the blocks; default the oracle (`OracleScorer()`). Pass predictors' scorer
            (`PredictorSet.as_scorer()`) to measure the damage of the blocks fine-tuning will really keep.
    """
    scorer = scorer if scorer is not None else OracleScorer()
    grid = sorted({float(r) for r in grid})
    if not grid or grid[0] <= 0 or grid[-1] > 1:
        raise ValueError(f"grid={grid} must hold keep ratios in (0, 1], e.g. 0.1, 0.2, ..., 1.0.")
    if not chunks:
        raise ValueError("measuring damage needs at least one held-out chunk of text.")
    num: dict[int, dict[float, float]] = {i: dict.fromkeys(grid, 0.0) for i in layers}
    den: dict[int, float] = dict.fromkeys(layers, 0.0)
    kept: dict[int, dict[float, list[float]]] = {i: {r: [] for r in grid} for i in layers}
    thr: dict[int, dict[float, list[float]]] = {i: {r: [] for r in grid} for i in layers}
    bar = None
    if progress:
        from tqdm.auto import tqdm  # imported only when a bar is shown

        bar = tqdm(total=len(chunks) * len(layers), desc="damage", unit="layer")
    lengths = []
    for ids in chunks:
        with torch.no_grad():
            xs = model.normed_inputs(ids, layers)  # {layer: [T, d]}
            T = ids.shape[0]
            lengths.append(T)
            cos, sin = model.rotary(T)  # [T, D] each
            nb = math.ceil(T / block_size)
            forced = forced_blocks(nb, sink_blocks, local_blocks)  # [nb]
            all_rows = torch.arange(T, device=cos.device)  # [T]
            for i in layers:
                parts = model.layer_parts(i)
                x = xs[i]  # [T, d]
                s = scorer(parts, x, block_size).float().cpu()  # [nb]
                dense = attention_output(parts, x, all_rows, cos, sin).float()  # [T, d]
                den[i] += float(dense.square().sum())
                for r in grid:
                    blocks = select_by_ratio(s, r, sink_blocks, local_blocks)  # [k]
                    rows = blocks_to_tokens(blocks, block_size, T).to(x.device)  # [N]
                    if rows.numel() == T:
                        full = dense  # everything kept: exactly the dense layer
                    else:
                        full = torch.zeros_like(dense)  # [T, d] eliminated rows get no attention update
                        full[rows] = attention_output(parts, x, rows, cos, sin).float()
                    num[i][r] += float((full - dense).square().sum())
                    kept[i][r].append(rows.numel() / T)
                    free = ~forced[blocks]  # kept blocks the score chose
                    lowest = s[blocks[free]].min() if bool(free.any()) else s.max()
                    thr[i][r].append(float(lowest / s.max().clamp_min(1e-30)))
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return DamageTable(
        layers=list(layers),
        grid=grid,
        damage={i: {r: num[i][r] / max(den[i], 1e-30) for r in grid} for i in layers},
        cost={i: {r: sum(v) / len(v) for r, v in kept[i].items()} for i in layers},
        threshold={i: {r: statistics.median(v) for r, v in thr[i].items()} for i in layers},
        seq_len=int(statistics.median(lengths)),
        chunks=len(chunks),
    )


def allocate(
    damage: dict[int, dict[float, float]],
    cost: dict[int, dict[float, float]],
    target: float,
    *,
    resolution: float = 1e-3,
) -> dict[int, float]:
    """Per-layer ratios minimising total damage with mean cost <= target (exact DP; see module docstring).

    Raises:
        ValueError: when even the cheapest choice per layer exceeds the budget (names the smallest target).
    """
    layers = sorted(damage)
    L = len(layers)
    if L == 0:
        return {}
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target={target} must be a kept fraction in (0, 1], e.g. 0.5.")
    floor_cost = sum(min(cost[i].values()) for i in layers) / L
    if floor_cost > target + 1e-12:
        raise ValueError(
            f"target kept fraction {target:.3f} is below the cheapest possible {floor_cost:.3f} "
            "(grid minimum plus "
            "the always-kept sink/local blocks); raise --target, add smaller ratios to --grid or use fewer "
            "sink/local blocks."
        )
    budget = math.floor(target * L / resolution + 1e-9)
    inf = float("inf")
    best = np.zeros(budget + 1)  # best[u]: least damage of the layers so far with total units <= u
    choices = []
    for i in layers:
        options = sorted(damage[i])
        units = [math.ceil(cost[i][r] / resolution - 1e-9) for r in options]
        cand = np.full((len(options), budget + 1), inf)
        for j, (r, u) in enumerate(zip(options, units)):
            if u <= budget:
                cand[j, u:] = best[: budget + 1 - u] + damage[i][r]
        pick = cand.argmin(0)  # [budget+1] first (smallest ratio) among equals: cheaper
        best = cand[pick, np.arange(budget + 1)]
        choices.append((options, units, pick))
    if not math.isfinite(best[budget]):
        raise ValueError(f"no per-layer choice fits target {target}; raise --target.")
    out: dict[int, float] = {}
    u = budget
    for i, (options, units, pick) in zip(reversed(layers), reversed(choices)):
        j = int(pick[u])
        out[i] = options[j]
        u -= units[j]
    return dict(sorted(out.items()))


def fraction_for_memory(
    budget_bytes: float, dense_bytes: float, sparse_bytes: float, sparse_fraction: float
) -> float:
    """Mean kept fraction over sparse layers that fits `budget_bytes`, from two measured peaks.

    Measure one training step dense (kept fraction 1.0, `dense_bytes`) and one at a uniform keep ratio
    (`sparse_bytes` at measured mean kept fraction `sparse_fraction`); token elimination's memory is linear in
    the kept fraction, so the budget's fraction follows by interpolation.
    """
    if not 0.0 <= sparse_fraction < 1.0 or dense_bytes <= sparse_bytes:
        raise ValueError(
            "fraction_for_memory needs a dense peak above the sparse one and a sparse kept fraction below 1; "
            f"got dense {dense_bytes:.3g} B, sparse {sparse_bytes:.3g} B at {sparse_fraction}."
        )
    per_fraction = (dense_bytes - sparse_bytes) / (1.0 - sparse_fraction)  # bytes per unit of kept fraction
    f = 1.0 - (dense_bytes - budget_bytes) / per_fraction
    if f <= 0.0:
        floor = dense_bytes - per_fraction
        raise ValueError(
            f"a memory budget of {budget_bytes / 2**30:.2f} GiB is below what even zero kept tokens "
            "would need "
            f"(~{floor / 2**30:.2f} GiB); raise the budget, shorten --seq-len or add gradient checkpointing."
        )
    return min(f, 1.0)


@dataclass
class BudgetResult:
    """The chosen per-layer keep ratios and what they cost and save."""

    layers: list[int]
    keep_ratio: list[float]
    threshold: list[float]
    """Per layer, the median relative threshold (lowest chosen score / max) the ratio implied on the text:
    for selection="threshold" (input-adaptive, so the budget then holds only on average)."""
    target: float
    kept_fraction: float
    """Mean realized kept-token fraction over sparse layers at the measured length (<= target)."""
    damage: float
    uniform_ratio: float | None
    uniform_damage: float | None
    """Damage of one ratio for all layers (the largest grid ratio within budget), for comparison."""
    table: dict[str, Any] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)
    """The SparsityConfig the search ran with (block size, sink/local blocks ...), as a dict."""

    def sparsity_dict(self, base: SparsityConfig | None = None) -> dict[str, Any]:
        """A full, validated SparsityConfig dict with these per-layer ratios (`SparsityConfig(**d)`)."""
        if base is None:
            base = SparsityConfig.from_dict(self.base) if self.base else SparsityConfig()
        d = {**base.to_dict(), "keep_ratio": list(self.keep_ratio), "sparse_layers": list(self.layers)}
        d["threshold"] = list(self.threshold)
        return SparsityConfig(**d).to_dict()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_yaml(self, path: str | Path, base: SparsityConfig | None = None, *, merge: bool = True) -> Path:
        """Write (or update) the `sparsity:` section of a `lemo finetune` YAML config with these ratios.

        With `merge`, an existing file keeps every other key; its own sparsity keys are the base.
        """
        import yaml  # imported only when writing a config

        p = Path(path)
        data: dict[str, Any] = {}
        if merge and p.is_file():
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
            if not isinstance(data, dict):
                raise ValueError(f"{p} does not hold a YAML mapping; pass a new file name.")
            if base is None and isinstance(data.get("sparsity"), dict):
                # The file keeps its settings (mlp, scorer ...) except those the measured costs depend on.
                measured = {
                    k: self.base[k] for k in ("block_size", "sink_blocks", "local_blocks") if k in self.base
                }
                base = SparsityConfig.from_dict({**data["sparsity"], **measured})
        data["sparsity"] = self.sparsity_dict(base)
        header = (
            f"# Per-layer keep ratios from lemo's budgeted search: target kept fraction {self.target:.3f}, "
            f"realized {self.kept_fraction:.3f} at {self.table.get('seq_len', '?')} tokens,\n"
            f"# total attention damage {self.damage:.4g} "
            f"(uniform {self.uniform_ratio}: {self.uniform_damage}).\n"
        )
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(header + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return p


def choose_keep_ratios(
    model: DenseModel,
    chunks: Sequence[torch.Tensor],
    target: float,
    *,
    sparsity: SparsityConfig | None = None,
    grid: Sequence[float] = DEFAULT_GRID,
    scorer: BlockScorer | None = None,
    resolution: float = 1e-3,
    progress: bool = False,
) -> BudgetResult:
    """Measure damage on held-out chunks; allocate per-layer keep ratios within `target` (mean kept fraction).

    The sparse layers, block size and sink/local blocks come from `sparsity` (default SparsityConfig());
    `scorer` chooses the blocks (default the oracle; see `measure_damage`).
    """
    sparsity = sparsity or SparsityConfig()
    layers = sparsity.resolve_layers(model.num_layers)
    if not layers:
        raise ValueError("sparse_layers resolves to no layer; there is nothing to budget.")
    table = measure_damage(
        model,
        chunks,
        layers,
        grid,
        block_size=sparsity.block_size,
        sink_blocks=sparsity.sink_blocks,
        local_blocks=sparsity.local_blocks,
        scorer=scorer,
        progress=progress,
    )
    chosen = allocate(table.damage, table.cost, target, resolution=resolution)
    kept = sum(table.cost[i][chosen[i]] for i in layers) / len(layers)
    total = sum(table.damage[i][chosen[i]] for i in layers)
    # The uniform baseline: the largest single grid ratio whose realized cost fits the budget.
    uniform = [r for r in table.grid if sum(table.cost[i][r] for i in layers) / len(layers) <= target + 1e-12]
    u_ratio = max(uniform) if uniform else None
    u_damage = sum(table.damage[i][u_ratio] for i in layers) if u_ratio is not None else None
    return BudgetResult(
        layers=layers,
        keep_ratio=[chosen[i] for i in layers],
        threshold=[round(table.threshold[i][chosen[i]], 6) for i in layers],
        target=target,
        kept_fraction=kept,
        damage=total,
        uniform_ratio=u_ratio,
        uniform_damage=u_damage,
        table={
            "seq_len": table.seq_len,
            "chunks": table.chunks,
            "grid": table.grid,
            "damage": {str(i): {str(r): v for r, v in d.items()} for i, d in table.damage.items()},
            "cost": {str(i): {str(r): v for r, v in d.items()} for i, d in table.cost.items()},
        },
        base=sparsity.to_dict(),
    )
