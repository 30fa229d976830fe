"""Step time from work counts divided by rates fitted to the committed H200 benchmarks.

Work of one step, summed over layers (rows: the rows each layer runs; sparse layers run their kept rows):
- linear FLOPs: 2 x rows x weights per pass; passes = forward + input-gradient backward (frozen weights get
  no weight gradient) + the recompute under checkpointing;
- attention FLOPs: 2 x n^2 x heads x head_dim per forward (QK^T and PV, halved by the causal mask), with the
  backward counted as 2.5 forwards (flash: dQ, dK, dV and the recomputed P) and one more under checkpointing;
- backward elimination (lemo/plan/backward.py): a sparse layer runs a dense forward of every row without a
  graph, then recompute and input-gradient backward of K/V over every row and of q, o and the MLP over the kept
  rows; its attention FLOPs are a full causal forward plus the kept share of it (kept queries against every key;
  random blocks sit anywhere, so a kept query sees T/2 keys on average) in the recompute and 2.5x that in the
  backward, all at the sparse-attention rate (lemo's varlen kernel in the forward; the kept-queries kernel, which
  shares its helpers and has no measured rate of its own, after it); three sparse launches;
- LM head FLOPs: 2 x scored rows x vocab x hidden, twice (HF: forward + backward; Triton: logits and the hidden
  gradient both in the forward), three times for the reference segmented loss (its chunks are checkpoints);
- memory traffic: the bytes of saved activations, once per pass (norms, RoPE, casts, adds are bound by it);
- launches: one unit per layer per pass (what dominates a 135M model at short T).
The rates are fitted by least squares on relative error over the benchmark rows (benchmarks/plan/plan_validation.py
--fit prints them); they describe an H200 with the Triton kernels and are only a rough guide elsewhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lemo.config import PlanConfig
from lemo.plan.backward import recompute_saved
from lemo.plan.memory import LayerRows, MemoryEstimate, _layer_saved, scored_rows
from lemo.plan.saved import attention_sdpa, attn_saved, backend, liger, lora_of, mlp_saved, tile_attention
from lemo.plan.shapes import ModelShape

FLASH_BACKWARD = 2.5  # flash-attention backward in forward-equivalents


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of each work count (1 / throughput). Fitted on the H200 rows; see module docstring.
    Sparse layers get their own attention and launch rates: they run lemo's Triton varlen kernel and the
    gather/scatter of kept rows, dense layers HF's SDPA (flash)."""

    linear_flop_s: float  # s per linear FLOP (decoder linears and the LM head)
    attention_flop_s: float  # s per attention FLOP in dense layers
    sparse_attention_flop_s: float  # s per attention FLOP in sparse layers
    byte_s: float  # s per activation byte per pass
    launch_s: float  # s per dense layer pass
    sparse_launch_s: float  # s per sparse layer pass


# `python benchmarks/plan/plan_validation.py --fit` on the 104 modelled H200 rows (7B/8B/SmolLM2, T 4K-114K):
# 820 TFLOP/s linear, 470 (SDPA) and 323 (lemo varlen) TFLOP/s attention, 0.5 TB/s activation traffic,
# 0.89 ms per dense and 1.43 ms per sparse layer pass.
H200 = Rates(
    linear_flop_s=1.22e-15,
    attention_flop_s=2.127e-15,
    sparse_attention_flop_s=3.098e-15,
    byte_s=1.980e-12,
    launch_s=0.888e-3,
    sparse_launch_s=1.430e-3,
)


@dataclass
class Work:
    linear_flop: float
    attention_flop: float
    sparse_attention_flop: float
    head_flop: float
    activation_bytes: float
    launches: float
    sparse_launches: float

    def vector(self) -> list[float]:
        """The fitted terms in `Rates` order (the LM head is a linear)."""
        return [
            self.linear_flop + self.head_flop,
            self.attention_flop,
            self.sparse_attention_flop,
            self.activation_bytes,
            self.launches,
            self.sparse_launches,
        ]


def _eliminating_backward(
    shape: ModelShape, r: LayerRows, cfg: PlanConfig, e: int
) -> tuple[float, float, float]:
    """(linear FLOPs, attention FLOPs, activation bytes) of one backward-elimination layer: forward of every row,
    then recompute and input-gradient backward, K/V over every row and the rest over the kept rows. Tiles are
    recomputed in their backward (`tile_attention`: every row-wise part; `tile_tokens`: the kept rows' MLP); the
    no-grad forward's are not."""
    rows, kept, tile = r.stored_rows, r.attn_rows, cfg.sparsity.tile_tokens
    kv = 2 * shape.hidden * shape.kv_dim  # k_proj and v_proj weights
    query = shape.attention_params() - kv  # q_proj and o_proj
    attn_tiles = 1 if tile_attention(cfg) and rows > tile else 0
    mlp_tiles = max(attn_tiles, 1 if 0 < tile < kept else 0)
    lin = 2 * rows * (shape.attention_params() + shape.mlp_params())
    lin += 2 * (rows * kv + kept * query) * (2 + attn_tiles) + 2 * kept * shape.mlp_params() * (2 + mlp_tiles)
    n = rows / cfg.batch_size  # attention is quadratic per sequence
    causal = 2 * n * n * shape.heads * shape.head_dim * cfg.batch_size
    att = causal * (1 + kept / rows * (1 + FLASH_BACKWARD))
    # The forward touches what a dense layer saves; recompute and backward what the recompute saves.
    fused = liger(cfg)
    lora = lora_of(cfg, traffic=True)
    traffic = (attn_saved(shape, lora, e, fused) + mlp_saved(shape, lora, e, fused)) * rows
    return lin, att, traffic + 2 * recompute_saved(shape, rows, kept, cfg, e, traffic=True)


def _trimmed_last(shape: ModelShape, r: LayerRows, cfg: PlanConfig, e: int) -> tuple[float, float, float]:
    """(linear FLOPs, attention FLOPs, activation bytes) of the trimmed last layer: K/V over every row, q, o and
    the MLP over the scored rows, each pass as a dense layer makes them (tiles recomputed in their backward). The
    scored rows are the completion at the end of a row (labelled_fraction f: a query sees T (1 - f/2) keys on
    average), or in plain text the kept rows, anywhere (T/2)."""
    rows, scored, tile = r.stored_rows, r.attn_rows, cfg.sparsity.tile_tokens
    passes = 3 if cfg.checkpointing else 2
    kv = 2 * shape.hidden * shape.kv_dim
    query = shape.attention_params() - kv
    attn_tiles = 1 if tile_attention(cfg) and rows > tile else 0
    mlp_tiles = max(attn_tiles, 1 if 0 < tile < scored else 0)
    lin = 2 * (rows * kv + scored * query) * (passes + attn_tiles)
    lin += 2 * scored * shape.mlp_params() * (passes + mlp_tiles)
    keys = rows / cfg.batch_size * (1 - cfg.labelled_fraction / 2)
    att = 4 * scored * keys * shape.heads * shape.head_dim * (1 + FLASH_BACKWARD + (passes - 2))
    return lin, att, recompute_saved(shape, rows, scored, cfg, e, traffic=True) * passes


def work(shape: ModelShape, cfg: PlanConfig, mem: MemoryEstimate) -> Work:
    e = 2 if cfg.dtype == "bf16" else 4
    passes = 3 if cfg.checkpointing else 2
    attn_passes = 1 + FLASH_BACKWARD + (1 if cfg.checkpointing else 0)
    B = cfg.batch_size
    lin = att = sparse_att = traffic = launches = sparse_launches = 0.0
    hd = shape.heads * shape.head_dim
    tile = cfg.sparsity.tile_tokens if cfg.sparse else 0
    off = {"tile_tokens": 0, **({"tile_attention": False} if hasattr(cfg.sparsity, "tile_attention") else {})}
    untiled = dataclasses.replace(cfg, sparsity=dataclasses.replace(cfg.sparsity, **off))
    for r in mem.layers:
        if r.backward:
            w = _eliminating_backward(shape, r, cfg, e)
            lin, sparse_att, traffic = lin + w[0], sparse_att + w[1], traffic + w[2]
            sparse_launches += 3  # forward, recompute, backward, whether or not checkpointing is on
            continue
        if r.trimmed:  # lemo's kept-queries kernel and row gathers, like a sparse layer's
            w = _trimmed_last(shape, r, cfg, e)
            lin, sparse_att, traffic = lin + w[0], sparse_att + w[1], traffic + w[2]
            sparse_launches += passes
            continue
        # A tiled MLP runs once more: its backward recomputes each tile.
        mlp_passes = passes + (1 if 0 < tile < r.mlp_rows else 0)
        attn_lin_passes = passes + (
            1 if tile_attention(cfg) and tile < r.attn_rows else 0
        )  # tiles recomputed
        lin += 2 * r.attn_rows * shape.attention_params() * attn_lin_passes
        lin += 2 * r.mlp_rows * shape.mlp_params() * mlp_passes
        n = r.attn_rows / B  # rows of one sequence: attention is quadratic per sequence
        flop = 2 * n * n * hd * B * attn_passes
        if (r.sparse or tile_attention(cfg)) and not attention_sdpa(shape, cfg, r.attn_rows):
            sparse_att += flop  # lemo's varlen kernel (tiled, dense layers run lemo's layer forward too)
        else:
            att += flop
        traffic += (
            _layer_saved(shape, r, untiled, e, traffic=True) * passes
        )  # tiling bounds, not removes, the traffic
        if r.sparse:
            sparse_launches += passes
        else:
            launches += passes
    sp = cfg.sparsity
    head_passes = 3 if cfg.sparse and sp.segmented_loss and backend(cfg) == "reference" else 2
    head = 2 * scored_rows(cfg, mem.layers) * shape.vocab * shape.hidden * head_passes
    return Work(lin, att, sparse_att, head, traffic, launches, sparse_launches)


def step_seconds(w: Work, rates: Rates = H200) -> float:
    return sum(a * b for a, b in zip(w.vector(), dataclasses.astuple(rates)))
