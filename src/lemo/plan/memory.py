"""Peak GPU memory (allocated) and pinned host memory of one training step, from the shape alone.

The step's peak is the largest of its phases (docs/plan.md has the derivation and the validation):
- layer l's backward: every stored layer input up to l (on the GPU, or with offload two layers in flight),
  layer l's saved activations (recomputed under checkpointing; under no checkpointing every layer's), the MLP
  gradients being formed and the full-length residual-stream gradient;
- the loss: every stored input, the final norm, and the LM head + cross-entropy working set.
Per-row byte counts come from what autograd saves in an HF Llama layer with PEFT LoRA (adapters in fp32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lemo.config import PlanConfig
from lemo.plan.shapes import ModelShape

LORA_BYTES = 4  # PEFT keeps adapters in fp32 (autocast_adapter_dtype) whatever the base dtype
ADAM_BYTES = 16  # fp32 adapter weight + its gradient + AdamW's two moments
HF_LOSS_FP32_COPIES = 3  # HF's loss: fp32 upcast logits, their log-softmax, its gradient [T, V] at once
# cuBLAS workspaces and allocator granularity: the residual of the committed rows at short T, 0.04 GiB on
# the 7-8B shapes and 0.06 GiB on SmolLM2 (docs/plan.md).
CUDA_WORKSPACE = 0.05 * 2**30
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


@dataclass
class LayerRows:
    """Rows (over the whole micro-batch) one decoder layer runs and stores."""

    index: int
    sparse: bool
    attn_rows: int
    mlp_rows: int
    stored_rows: int  # rows of the checkpointed input (kept rows for a sparse layer with mlp="tokens")


@dataclass
class MemoryEstimate:
    peak: float  # bytes
    phase: str  # where the peak falls
    breakdown: dict[str, float]  # components of the peak, bytes
    host: float  # pinned host bytes (offload)
    stored_total: float  # bytes of all checkpointed inputs, wherever they wait
    kept_fraction: float  # kept rows / T in the sparse layers (1.0 without elimination)
    layers: list[LayerRows] = field(default_factory=list)


def kept_rows(T: int, keep: float, cfg) -> int:
    """Rows a sparse layer keeps of one T-token row: select_by_ratio's block count, clipped at the last block."""
    b = cfg.block_size
    nb = -(-T // b)
    n_keep = min(nb, max(math.ceil(keep * nb - 1e-9), min(nb, cfg.sink_blocks + cfg.local_blocks)))
    rows = n_keep * b
    if cfg.local_blocks > 0:  # the last (possibly partial) block is always kept
        rows -= nb * b - T
    return min(T, rows)


def layer_rows(shape: ModelShape, cfg: PlanConfig) -> list[LayerRows]:
    B, T, sp = cfg.batch_size, cfg.seq_len, cfg.sparsity
    sparse = sp.resolve_layers(shape.layers) if cfg.sparse else []
    if cfg.sparse and sp.selection != "ratio" and sparse:
        raise ValueError(
            "the planner models selection='ratio' (a fixed keep budget); selection='threshold' keeps a "
            "data-dependent number of blocks: plan with keep_ratio set to the fraction you expect."
        )
    keep = sp.per_layer("keep_ratio", sparse, shape.layers) if sparse else {}
    out = []
    for i in range(shape.layers):
        if i not in keep:
            out.append(LayerRows(i, False, B * T, B * T, B * T))
            continue
        n = B * kept_rows(T, keep[i], sp)
        tokens = sp.mlp == "tokens"
        out.append(LayerRows(i, True, n, n if tokens else B * T, n if tokens else B * T))
    return out


def _lora_in(shape: ModelShape, lora, group: tuple[str, ...], e: int) -> float:
    """Per-row bytes that LoRA adds to a sublayer's saved tensors: the input cast to fp32 that lora_A keeps
    (one copy per adapter in bf16, none extra in fp32 where the input is saved anyway), and lora_A's output."""
    extra = 0.0
    for t in lora.targets:
        if t not in group:
            continue
        fan_in, _ = shape.in_out(t)
        extra += (LORA_BYTES * fan_in if e != LORA_BYTES else 0) + LORA_BYTES * lora.rank
    return extra


def attn_saved(shape: ModelShape, lora, e: int) -> float:
    """Bytes per row saved by the attention sublayer: fp32 norm input, LoRA inputs, post-RoPE q/k, v, the
    attention output (flash/SDPA save O(T), no T x T matrix) and its log-sum-exp."""
    d = shape.hidden
    fp32_norm_input = 4 * d
    qkv_out = e * (shape.q_dim + 2 * shape.kv_dim) + e * shape.q_dim + 4 * shape.heads
    shared_lora_x = e * d if e == LORA_BYTES and any(t in lora.targets for t in ATTN[:3]) else 0
    return fp32_norm_input + qkv_out + shared_lora_x + _lora_in(shape, lora, ATTN, e)


def mlp_saved(shape: ModelShape, lora, e: int) -> float:
    """Bytes per row saved by the MLP sublayer: fp32 norm input, gate (SiLU input), SiLU(gate), up."""
    d, i = shape.hidden, shape.intermediate
    shared = e * d if e == LORA_BYTES and any(t in lora.targets for t in MLP[:2]) else 0
    return 4 * d + 3 * e * i + shared + _lora_in(shape, lora, MLP, e)


def mlp_grads(shape: ModelShape, e: int) -> float:
    """Bytes per row of the MLP gradients formed in backward (d down-input, d SiLU, d gate/up): 3 x [rows, I]."""
    return 3 * e * shape.intermediate


def layer_working(shape: ModelShape, rows: LayerRows, cfg: PlanConfig, e: int) -> dict[str, float]:
    """One layer's activations while its backward runs (saved tensors plus the gradients being formed)."""
    lora = cfg.lora
    tile = cfg.sparsity.tile_tokens if cfg.sparse else 0
    attn = attn_saved(shape, lora, e) * rows.attn_rows
    if tile and tile_attention(cfg) and rows.attn_rows > tile:
        # Tiled attention sublayer: q, k, v, the attention output, its input and that input's gradient span
        # the rows; norms, projections' LoRA inputs and RoPE exist for one tile at a time.
        core = e * (2 * shape.q_dim + 2 * shape.kv_dim) + 4 * shape.heads
        attn = (core + 2 * e * shape.hidden) * rows.attn_rows + (attn_saved(shape, lora, e) - core) * tile
    mlp_rows = rows.mlp_rows
    if tile and mlp_rows > tile:
        # Tiled MLP (lemo.memory.tiled_rows around the MLP): the fp32 norm input, the MLP's input and, in
        # backward, that input's gradient span the rows; one tile's activations and gradients exist at a time.
        per_tile = (mlp_saved(shape, lora, e) - 4 * shape.hidden + mlp_grads(shape, e)) * tile
        mlp = {"MLP (tiled)": per_tile + (4 * shape.hidden + 2 * e * shape.hidden) * mlp_rows}
    else:
        mlp = {"MLP activations+grads": (mlp_saved(shape, lora, e) + mlp_grads(shape, e)) * mlp_rows}
    # The layer's peak is its MLP backward or one of two later phases of a dense layer that HF runs (not lemo):
    # the backward of the post-attention RMSNorm, then the attention backward, where SDPA forms its gradients.
    # Untiled, the MLP's are the larger; tiling the MLP makes one of the others the peak.
    phases = [mlp]
    if not rows.sparse and not tile_attention(cfg):
        phases.append({"post-attention norm backward": norm_backward(shape, e) * rows.mlp_rows})
        if cfg.device == "cuda":
            phases.append({"attention backward (SDPA)": sdpa_backward(shape, e) * rows.attn_rows})
    return {"attention activations": attn, **max(phases, key=lambda phase: sum(phase.values()))}


def norm_backward(shape: ModelShape, e: int) -> float:
    """Bytes per row alive while HF's RMSNorm (eager, in fp32) backpropagates: its fp32 input, five fp32
    temporaries of its backward (pow, mean and the products), and the gradients of the MLP's input and of the
    residual stream. Measured on a CPU with 8B proportions (benchmarks/plan/plan_peak_probe.py): the five temporaries
    are alive at once at the peak, which with the MLP tiled no other phase covers."""
    return 4 * shape.hidden + 5 * 4 * shape.hidden + 2 * e * shape.hidden


def sdpa_backward(shape: ModelShape, e: int) -> float:
    """Bytes per row that SDPA's (FlashAttention's) backward forms: the output's gradient, dq/dk/dv, an fp32 dq
    accumulator and, with grouped KV heads, dk/dv per query head before the group sum. For the Llama-3-8B shape
    that is 52 KiB per token, as measured (benchmarks/results/attention_backward_probe.csv)."""
    grouped = 2 * e * shape.q_dim if shape.kv_dim < shape.q_dim else 0
    return e * shape.q_dim + e * (shape.q_dim + 2 * shape.kv_dim) + 4 * shape.q_dim + grouped


def loss_working(shape: ModelShape, cfg: PlanConfig, rows: int, e: int) -> float:
    """The LM head + cross-entropy working set over `rows` scored rows."""
    V, d = shape.vocab, shape.hidden
    sp = cfg.sparsity
    if not (cfg.sparse and sp.segmented_loss):
        return HF_LOSS_FP32_COPIES * 4 * V * rows
    chunk = min(sp.loss_chunk, rows)
    gathered = e * d * rows  # flat_h[rows] when some rows carry no label (loss on kept rows)
    if backend(cfg) == "triton":
        # Logits of one chunk in the weight dtype, reused; the hidden gradient is formed in the forward.
        return e * V * chunk + e * d * rows + gathered
    # Reference: each chunk is a checkpoint; its backward holds the fp32 logits, log-softmax and gradient.
    return HF_LOSS_FP32_COPIES * 4 * V * chunk + e * d * rows + gathered


def tile_attention(cfg: PlanConfig) -> bool:
    """Whether the attention sublayer is tiled too (`SparsityConfig.tile_attention`, where this lemo has it)."""
    return bool(cfg.sparse and cfg.sparsity.tile_tokens and getattr(cfg.sparsity, "tile_attention", False))


def backend(cfg: PlanConfig) -> str:
    """The kernels the step will run: "auto" means Triton on a GPU (the planner does not ask whether Triton
    is installed here: a plan is often made on another machine than the run)."""
    choice = cfg.sparsity.backend
    if choice == "auto":
        return "triton" if cfg.device == "cuda" else "reference"
    return choice


def lora_params(shape: ModelShape, cfg: PlanConfig) -> int:
    per_layer = 0
    for t in cfg.lora.targets:
        fan_in, fan_out = shape.in_out(t)
        per_layer += cfg.lora.rank * (fan_in + fan_out)
    return per_layer * shape.layers


def _layer_saved(shape: ModelShape, rows: LayerRows, cfg: PlanConfig, e: int) -> float:
    """What a layer keeps for backward when it is not checkpointed (its activations, no gradients yet)."""
    tiled = cfg.sparse and 0 < cfg.sparsity.tile_tokens < rows.mlp_rows
    per_row = (
        (4 + e) * shape.hidden if tiled else mlp_saved(shape, cfg.lora, e)
    )  # tiled: norm input, MLP input
    mlp = per_row * rows.mlp_rows
    return attn_saved(shape, cfg.lora, e) * rows.attn_rows + mlp


def estimate(shape: ModelShape, cfg: PlanConfig) -> MemoryEstimate:
    """Peak allocated GPU bytes of one training step (the second one: AdamW's moments exist) and host bytes."""
    e = 2 if cfg.dtype == "bf16" else 4
    sp = cfg.sparsity
    rows = layer_rows(shape, cfg)
    BT = cfg.batch_size * cfg.seq_len
    d = shape.hidden
    offload = cfg.sparse and sp.offload == "cpu"
    ckpt = cfg.checkpointing
    stored = [e * d * r.stored_rows if ckpt else 0.0 for r in rows]
    # The reference row update (index_add) keeps its source for backward: a sparse layer's updates [N, d] (attention,
    # and with mlp="tokens" the MLP's) stay alive until its backward (+4.8 GiB at 32K on Llama-3-8B); under a
    # whole-layer checkpoint (mlp="dense") they are recomputed instead. The Triton update saves only the rows.
    n_held = 2 if sp.mlp == "tokens" else (0 if ckpt else 1)
    on = backend(cfg) == "reference"
    by_lemo = tile_attention(cfg)  # then dense layers run lemo's layer forward (every row kept) too
    held = [n_held * e * d * r.attn_rows if (r.sparse or by_lemo) and on else 0.0 for r in rows]
    ws = cfg.world_size
    weights = float(e * shape.total_params())
    fixed = {
        # Under FSDP2 each rank keeps its shard; the adapters and AdamW's state are sharded with them.
        "weights": weights / ws,
        "LoRA + AdamW": float(ADAM_BYTES * lora_params(shape, cfg)) / ws,
        # RoPE cos/sin [T, head_dim] in the model dtype, input ids, labels and shifted labels (int64).
        "RoPE tables, ids": float((2 * e * shape.head_dim + 24) * BT),
    }
    if cfg.device == "cuda":
        fixed["CUDA workspaces"] = CUDA_WORKSPACE
    phases: list[tuple[str, dict[str, float]]] = []
    if ws > 1:
        # A layer computes with its weights whole: the one running and the one prefetched behind it.
        fixed["gathered layers (FSDP2)"] = 2.0 * e * (shape.attention_params() + shape.mlp_params())
        # Each rank loads the whole model onto its GPU before `fully_shard` splits it.
        phases.append(("loading the weights (before sharding)", {"weights": weights}))
    saved = [(0.0 if ckpt else _layer_saved(shape, r, cfg, e)) + h for r, h in zip(rows, held)]
    for r in reversed(rows):
        i = r.index
        parts = dict(fixed)
        if offload:  # the layer being recomputed and the one prefetched behind it
            parts["stored inputs (in flight)"] = stored[i] + (stored[i - 1] if i else 0.0)
        elif ckpt:
            parts["stored layer inputs"] = sum(stored[: i + 1])
        if ckpt and any(held):
            parts["sparse-layer updates (reference)"] = sum(held[: i + 1])
        if not ckpt:
            parts["other layers' activations"] = sum(saved[:i])
        parts.update({f"layer {i} {k}": v for k, v in layer_working(shape, r, cfg, e).items()})
        parts["residual-stream gradient"] = float(e * d * BT)
        phases.append((f"backward of layer {i}" + (" (sparse)" if r.sparse else ""), parts))
    sparse_rows = [r for r in rows if r.sparse]
    loss_rows = BT
    if cfg.sparse and sp.segmented_loss and sp.loss_tokens == "kept" and sparse_rows:
        loss_rows = sparse_rows[-1].attn_rows  # only the positions the last sparse layer kept are scored
    loss_rows = min(loss_rows, math.ceil(cfg.labelled_fraction * BT))
    parts = dict(fixed)
    if offload:
        parts["stored inputs (in flight)"] = stored[-1]
    elif ckpt:
        parts["stored layer inputs"] = sum(stored)
    if ckpt and any(held):
        parts["sparse-layer updates (reference)"] = sum(held)
    if not ckpt:
        parts["all layers' activations"] = sum(saved)
    parts["final norm"] = float(4 * d * BT)
    parts["LM head + cross-entropy"] = loss_working(shape, cfg, loss_rows, e)
    phases.append(("loss (LM head + cross-entropy)", parts))
    phase, breakdown = max(phases, key=lambda p: sum(p[1].values()))
    kept = [r.attn_rows / BT for r in sparse_rows]
    return MemoryEstimate(
        peak=sum(breakdown.values()),
        phase=phase,
        breakdown=breakdown,
        host=sum(stored) if offload else 0.0,
        stored_total=sum(stored),
        kept_fraction=sum(kept) / len(kept) if kept else 1.0,
        layers=rows,
    )
