"""Backward elimination (`SparsityConfig(elimination="backward")`, lemo/sparsity/backward.py) in the plan.

A sparse layer then runs an exact dense forward of every row without a graph and saves only its input h [T, d]
(on the GPU, or in pinned host memory with offload="cpu"); its backward recomputes the kept rows' update from h:
the norm and K/V projections of every row, q, o and the MLP of the kept rows, the kept queries against every
key (`query_rows_attention`), and backpropagates that. So, per sparse layer:

- stored: the whole layer input, as a checkpointed dense layer stores it, whatever `gradient_checkpointing` says;
  beside it, for the rest of the step, the layer's RoPE tables and the ids of its kept rows (`held`);
- its backward's working set (`working`): K/V of every row and their norm/LoRA inputs, q, the attention output
  and the MLP of the kept rows, the kept update and its incoming gradient; tiled where configured;
- its forward's transient (`forward_transient`): full-length q/k/v, attention output and MLP intermediates
  (the MLP over one tile with `tile_tokens`), with nothing stored but h;
- its work (lemo/plan/time.py, from `recompute_saved` for the traffic): a full dense forward, then recompute and
  input-gradient backward of K/V over every row and of everything else over the kept rows.
"""

from __future__ import annotations

from lemo.config import PlanConfig
from lemo.plan.saved import (
    KV,
    QUERY,
    backend,
    kv_saved,
    liger,
    lora_in,
    lora_of,
    mlp_grads,
    mlp_saved,
    mlp_working,
    normed_input,
    query_saved,
    rmsnorm_backward,
    tile_attention,
)
from lemo.plan.shapes import ModelShape

ROW_IDS = 3 * 8  # int64 per kept row: its row, its place among the segment rows, its index in its segment


def applies(cfg: PlanConfig) -> bool:
    """Whether the sparse layers eliminate in backward (`SparsityConfig.elimination`, where this lemo has it)."""
    return bool(cfg.sparse and getattr(cfg.sparsity, "elimination", "forward") == "backward")


def held(shape: ModelShape, rows: int, kept: int, e: int) -> float:
    """Bytes one layer keeps on the GPU from its forward to the end of the step, beside its stored input: its RoPE
    tables cos/sin [rows, head_dim] in the model dtype and the ids of its kept rows. With scorer="gradient" the ids
    are made in the layer's backward; counting them from the forward over-states by 24 bytes per kept row."""
    return 2 * e * shape.head_dim * rows + ROW_IDS * kept


def _query_rows(shape: ModelShape, lora, e: int, fused: bool = False) -> float:
    """Bytes per kept row of the query part of the recompute: the kept rows' own input norm, q and the output,
    and their RoPE tables (cos/sin gathered for the kept rows, which q's rotation saves)."""
    norm = normed_input(shape, lora, ("q_proj",), e, fused)
    return norm + query_saved(shape, lora, e) + 2 * e * shape.head_dim


def recompute_saved(
    shape: ModelShape, rows: int, kept: int, cfg: PlanConfig, e: int, traffic: bool = False
) -> float:
    """Bytes autograd saves in the kept rows' recompute, untiled: K/V of every row, q/o and the MLP of the kept.
    `traffic`: as the step's time counts them (`lora_of`)."""
    lora, fused = lora_of(cfg, traffic), liger(cfg)
    every = normed_input(shape, lora, KV, e, fused) + kv_saved(shape, lora, e)
    return every * rows + (_query_rows(shape, lora, e, fused) + mlp_saved(shape, lora, e, fused)) * kept


def working(shape: ModelShape, rows: int, kept: int, cfg: PlanConfig, e: int) -> dict[str, float]:
    """One layer's activations at the peak of its backward: the kept rows' MLP backward (`_kept_phase`), or at
    a low keep ratio the input norm's backward over every row, which comes last (the K/V saved for it are freed
    by then, the input's gradient is being gathered); the kept update and its gradient are alive throughout."""
    d, tile = shape.hidden, cfg.sparsity.tile_tokens
    if tile_attention(cfg) and rows > tile:
        # The keys' tiles keep their input rows, and form those rows' gradient, while one tile is backpropagated.
        norm = 2 * e * d * rows + rmsnorm_backward(shape, e, liger(cfg)) * tile
    else:
        norm = (
            e * d * rows + rmsnorm_backward(shape, e, liger(cfg)) * rows
        )  # the input's gradient, both paths
    norm = {"input norm backward (every row)": norm}
    phase = max(_kept_phase(shape, rows, kept, cfg, e), norm, key=lambda p: sum(p.values()))
    return {"kept update and its gradient": 2 * e * d * kept, **phase}  # u [K, d] and grad_out[K]


def _kept_phase(shape: ModelShape, rows: int, kept: int, cfg: PlanConfig, e: int) -> dict[str, float]:
    """The kept rows' MLP backward (the attention's gradients come after the MLP's are freed), or with the MLP
    alone tiled the post-attention norm's backward after it."""
    lora, d, tile, fused = lora_of(cfg), shape.hidden, cfg.sparsity.tile_tokens, liger(cfg)
    out = {}
    if tile_attention(cfg) and rows > tile:
        # Tiles keep only their inputs: the gathered rows (keys' tiles) with k and v, and the kept rows (queries'
        # and post's tiles) with q and the attention output; post's backward forms its inputs' gradients over
        # the kept rows, and one tile of o_proj + norm + MLP (its output and a gradient too) exists at a time.
        out["K/V of every row (tiled)"] = (e * d + e * 2 * shape.kv_dim) * rows
        # The kept rows' input, gathered RoPE tables, q, the attention output and its log-sum-exp.
        q_rows = e * d + 2 * e * shape.head_dim + query_saved(shape, lora, e) - lora_in(shape, lora, QUERY, e)
        out["kept queries + attention (tiled)"] = (q_rows + e * d + e * shape.q_dim) * kept
        post = (
            lora_in(shape, lora, ("o_proj",), e)
            + mlp_saved(shape, lora, e, fused)
            + mlp_grads(shape, e, fused)
        )
        out["kept MLP (one tile)"] = (post + 2 * e * d) * min(tile, kept)
    else:
        out["K/V of every row"] = (normed_input(shape, lora, KV, e, fused) + kv_saved(shape, lora, e)) * rows
        out["kept queries + attention"] = _query_rows(shape, lora, e, fused) * kept
        mlp = mlp_working(shape, kept, cfg, e)
        # The norm's incoming gradient is the kept update's, and the tiled MLP's input gradient is already one
        # of its fp32 temporaries (CPU listing, 8B proportions): no gradient beyond `rmsnorm_backward`.
        norm = {"post-attention norm backward": rmsnorm_backward(shape, e, fused) * kept}
        out.update({f"kept {k}": v for k, v in max(mlp, norm, key=lambda p: sum(p.values())).items()})
    buffers = reference_buffers(shape, rows, kept, cfg, e)
    if buffers:
        out["kept-queries attention (reference)"] = buffers
    return out


def reference_buffers(shape: ModelShape, rows: int, kept: int, cfg: PlanConfig, e: int) -> float:
    """What the reference `query_rows_attention` (one SDPA call per run of kept rows) saves beyond the Triton
    kernel: with tile_attention, each run's output besides the output tensor the tiles keep; on a CPU, where SDPA
    has no lower-right causal kernel, each run [p, p+m) (but one at p=0) also saves a materialized [m, p+m] mask
    in the model dtype. Expected sum of m (p+m) over the runs for random blocks at keep k: the kept rows outside
    the first run, each seeing T/2 keys plus half its run (length-biased geometric runs: (1+k)/(2(1-k)) blocks).
    """
    if backend(cfg) != "reference":
        return 0.0
    out = e * shape.q_dim * kept if tile_attention(cfg) and rows > cfg.sparsity.tile_tokens else 0.0
    if cfg.device == "cpu" and kept < rows:
        b, k = cfg.sparsity.block_size, kept / rows
        first_run = min(kept, b / (1 - k))
        out += e * (kept - first_run) * min(rows, rows / 2 + b * (1 + k) / (2 * (1 - k)))
    return out


def forward_transient(shape: ModelShape, rows: int, cfg: PlanConfig, e: int) -> float:
    """Bytes alive in one layer's forward (every row, no graph) at its MLP, beyond its input: the gathered rows,
    q, k, v and the attention output over every row; untiled also the normed input, the residual sum and the MLP's
    input; and three [rows, I] MLP intermediates (SiLU(gate), up, their product) over the rows or one tile."""
    d, tile = shape.hidden, cfg.sparsity.tile_tokens
    span = e * (2 * d + 2 * shape.q_dim + 2 * shape.kv_dim)  # gathered h, normed x, q, k, v, attention output
    mlp_rows = min(rows, tile) if tile else rows
    if tile_attention(cfg) and rows > tile:
        # The tiles' outputs are concatenated (the layer output too); the residual sum and the MLP input exist
        # for one tile.
        return (span + e * d) * rows + (2 * e * d + 3 * e * shape.intermediate) * mlp_rows
    return (span + 2 * e * d) * rows + 3 * e * shape.intermediate * mlp_rows
