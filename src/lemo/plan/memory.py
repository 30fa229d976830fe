"""Peak GPU memory (allocated) and pinned host memory of one training step, from the shape alone.

The step's peak is the largest of its phases (docs/plan.md has the derivation and the validation):
- layer l's backward: every stored layer input up to l (on the GPU, or with offload two layers in flight),
  layer l's saved activations (recomputed under checkpointing; under no checkpointing every layer's), the MLP
  gradients being formed and the full-length residual-stream gradient;
- under backward elimination, a sparse layer's forward too: every row runs it without a graph
  (lemo/plan/backward.py has that mode's terms);
- the loss: every stored input, the final norm, and the LM head + cross-entropy working set.
Per-row byte counts are in lemo/plan/saved.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lemo.config import PlanConfig
from lemo.plan import backward
from lemo.plan.saved import (
    attention_sdpa,
    attn_saved,
    backend,
    liger,
    lora_of,
    mlp_saved,
    mlp_working,
    norm_backward,
    rmsnorm_backward,
    sdpa_backward,
    sdpa_repeated_kv,
    tile_attention,
)
from lemo.plan.shapes import ModelShape
from lemo.sparsity.trimmed import TRIM_MAX_SHARE

ADAM_BYTES = 16  # fp32 adapter weight + its gradient + AdamW's two moments
HF_LOSS_FP32_COPIES = 3  # HF's loss: fp32 upcast logits, their log-softmax, its gradient [T, V] at once
# cuBLAS workspaces and allocator granularity: the residual of the committed rows at short T, 0.04 GiB on
# the 7-8B shapes and 0.06 GiB on SmolLM2 (docs/plan.md).
CUDA_WORKSPACE = 0.05 * 2**30


@dataclass
class LayerRows:
    """Rows (over the whole micro-batch) one decoder layer runs and stores."""

    index: int
    sparse: bool
    attn_rows: int
    mlp_rows: int
    stored_rows: int  # rows of the checkpointed input (kept rows for a sparse layer with mlp="tokens")
    backward: bool = False
    """Backward elimination: every row runs the forward (no graph) and is stored; attn_rows and mlp_rows are the
    kept rows, which the layer's backward recomputes."""
    trimmed: bool = False
    """The trimmed last layer (`trim_last_layer`): K/V over every row (stored_rows), q, o and the MLP over the
    rows the loss scores (attn_rows = mlp_rows), with a graph as any layer has."""


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
    if sp.dense_tail > 0:  # the last steps keep every block, and they set the peak
        keep = dict.fromkeys(keep, 1.0)
    in_backward = backward.applies(cfg)
    out = []
    for i in range(shape.layers):
        if i not in keep:
            out.append(LayerRows(i, False, B * T, B * T, B * T))
            continue
        n = B * kept_rows(T, keep[i], sp)
        if in_backward:
            out.append(LayerRows(i, True, n, n, B * T, backward=True))
            continue
        tokens = sp.mlp == "tokens"
        out.append(LayerRows(i, True, n, n if tokens else B * T, n if tokens else B * T))
    scored = scored_rows(cfg, out)
    if trims(cfg, out, scored):
        out[-1] = LayerRows(len(out) - 1, False, scored, scored, B * T, trimmed=True)
    return out


def trims(cfg: PlanConfig, rows: list[LayerRows], scored: int) -> bool:
    """Whether the last layer runs trimmed to the `scored` rows (`trim_last_layer`, with lemo's segmented loss, a
    dense last layer and at most TRIM_MAX_SHARE of the rows scored, as lemo.sparsity.trimmed decides)."""
    sp = cfg.sparsity
    trim = getattr(sp, "trim_last_layer", False) and sp.segmented_loss
    few = scored <= TRIM_MAX_SHARE * cfg.batch_size * cfg.seq_len
    return bool(cfg.sparse and trim and rows and not rows[-1].sparse and few)


def layer_working(shape: ModelShape, rows: LayerRows, cfg: PlanConfig, e: int) -> dict[str, float]:
    """One layer's activations while its backward runs (saved tensors plus the gradients being formed)."""
    if rows.backward or rows.trimmed:  # both backpropagate query rows against the keys of every row
        return backward.working(shape, rows.stored_rows, rows.attn_rows, cfg, e)
    lora = lora_of(cfg)
    tile = cfg.sparsity.tile_tokens if cfg.sparse else 0
    fused = liger(cfg)
    attn = attn_saved(shape, lora, e, fused) * rows.attn_rows
    if tile and tile_attention(cfg) and rows.attn_rows > tile:
        # Tiled attention sublayer: q, k, v, the attention output, its input and that input's gradient span
        # the rows; norms, projections' LoRA inputs and RoPE exist for one tile at a time.
        core = e * (2 * shape.q_dim + 2 * shape.kv_dim) + 4 * shape.heads
        attn = (core + 2 * e * shape.hidden) * rows.attn_rows + (
            attn_saved(shape, lora, e, fused) - core
        ) * tile
    mlp = mlp_working(shape, rows.mlp_rows, cfg, e)
    # The layer's peak is its MLP backward or one of two later phases of a dense layer that HF runs (not lemo):
    # the backward of the post-attention RMSNorm, then the attention backward, where SDPA forms its gradients.
    # Untiled, the MLP's are the larger; tiling the MLP makes one of the others the peak.
    phases = [mlp]
    if not rows.sparse and not tile_attention(cfg):
        phases.append({"post-attention norm backward": norm_backward(shape, e, fused) * rows.mlp_rows})
        if cfg.device == "cuda":
            phases.append({"attention backward (SDPA)": sdpa_backward(shape, e) * rows.attn_rows})
    out = {"attention activations": attn, **max(phases, key=lambda phase: sum(phase.values()))}
    if (rows.sparse or tile_attention(cfg)) and attention_sdpa(shape, cfg, rows.attn_rows):
        out["SDPA's repeated K/V"] = (
            sdpa_repeated_kv(shape, e) * rows.attn_rows
        )  # lemo's layer code runs SDPA
    return out


def fused_loss(cfg: PlanConfig) -> bool:
    """Whether the loss is Liger's fused linear cross-entropy: a Liger model with its own loss (lemo's segmented
    loss replaces Liger's forward when it is on)."""
    return liger(cfg) and not (cfg.sparse and cfg.sparsity.segmented_loss)


def flce_chunk(rows: int, vocab: int, hidden: int) -> int:
    """Rows per chunk of Liger's fused linear cross-entropy: its logits chunk is about the size of its input."""
    return min(rows, 1 << max(0, math.ceil(math.log2(max(1, -(-rows // -(-vocab // hidden)))))))


def loss_working(shape: ModelShape, cfg: PlanConfig, rows: int, e: int) -> float:
    """The LM head + cross-entropy working set over `rows` scored rows."""
    V, d = shape.vocab, shape.hidden
    sp = cfg.sparsity
    if fused_loss(cfg):
        # One chunk's logits in the model dtype (the kernel turns them into their gradient in place), the hidden
        # gradient formed in the forward, and the per-row losses, over every position.
        return e * V * flce_chunk(rows, V, d) + e * d * rows + 4 * rows
    if not (cfg.sparse and sp.segmented_loss):
        return HF_LOSS_FP32_COPIES * 4 * V * rows
    chunk = min(sp.loss_chunk, rows)
    gathered = e * d * rows  # flat_h[rows] when some rows carry no label (loss on kept rows)
    if backend(cfg) == "triton":
        # Logits of one chunk in the weight dtype, reused; the hidden gradient is formed in the forward.
        return e * V * chunk + e * d * rows + gathered
    # Reference: each chunk is a checkpoint; its backward holds the fp32 logits, log-softmax and gradient.
    return HF_LOSS_FP32_COPIES * 4 * V * chunk + e * d * rows + gathered


def lora_params(shape: ModelShape, cfg: PlanConfig) -> int:
    per_layer = 0
    for t in cfg.lora.targets:
        fan_in, fan_out = shape.in_out(t)
        per_layer += cfg.lora.rank * (fan_in + fan_out)
    return per_layer * shape.layers


def scored_rows(cfg: PlanConfig, rows: list[LayerRows]) -> int:
    """Positions that reach the LM head: the labelled ones, and with the segmented loss on kept positions only
    those the last sparse layer kept (forward elimination; under backward elimination every row ran every layer).
    Liger's fused loss runs every position through the head (it masks the unlabelled ones itself)."""
    BT = cfg.batch_size * cfg.seq_len
    if fused_loss(cfg):
        return BT
    sp = cfg.sparsity
    eliminated = [r for r in rows if r.sparse and not r.backward]
    n = BT  # (a trimmed last layer scores what this counts: it is never sparse and does not count here)
    if cfg.sparse and sp.segmented_loss and sp.loss_tokens == "kept" and eliminated:
        n = eliminated[-1].attn_rows  # only the positions the last sparse layer kept are scored
    return min(n, math.ceil(cfg.labelled_fraction * BT))


def _layer_saved(shape: ModelShape, rows: LayerRows, cfg: PlanConfig, e: int, traffic: bool = False) -> float:
    """What a layer keeps for backward when it is not checkpointed (its activations, no gradients yet).
    `traffic`: as the step's time counts it (`lora_of`)."""
    if rows.trimmed:
        return backward.recompute_saved(shape, rows.stored_rows, rows.attn_rows, cfg, e, traffic)
    lora = lora_of(cfg, traffic)
    tiled = cfg.sparse and 0 < cfg.sparsity.tile_tokens < rows.mlp_rows
    per_row = (
        (4 + e) * shape.hidden if tiled else mlp_saved(shape, lora, e, liger(cfg))
    )  # tiled: norm input, MLP input
    mlp = per_row * rows.mlp_rows
    return attn_saved(shape, lora, e, liger(cfg)) * rows.attn_rows + mlp


@dataclass
class _Stored:
    """What each layer keeps from its forward for its backward (bytes per layer)."""

    inputs: list[float]  # checkpointed (or backward-elimination) layer inputs, on the GPU or in host memory
    updates: list[float]  # the reference row update's sources, under checkpointing
    activations: list[float]  # saved activations of layers that are not checkpointed
    held: list[float]  # backward elimination: a sparse layer's RoPE tables and kept-row ids (`backward.held`)
    offload: bool

    def alive(self, last: int, *, backward: bool, loss: bool = False) -> dict[str, float]:
        """What is alive while layer `last` runs its forward or `backward`, or at the `loss`: the inputs and updates
        of layers 0..last (with offload only what is in flight: `last`'s and, but at the loss, the one copied
        before it), the activations of the layers before it (all at the loss), and the held tables of layers
        0..last (all of them in the backward: the step's graph keeps them until it is freed)."""
        parts = {}
        if self.offload:
            before = self.inputs[last - 1] if last and not loss else 0.0
            parts["stored inputs (in flight)"] = self.inputs[last] + before
        elif any(self.inputs):
            parts["stored layer inputs"] = sum(self.inputs[: last + 1])
        if any(self.updates):
            parts["sparse-layer updates (reference)"] = sum(self.updates[: last + 1])
        if any(self.activations):
            name = "all layers' activations" if loss else "other layers' activations"
            parts[name] = sum(self.activations[: last + 1 if loss else last])
        if any(self.held):
            held = self.held if backward else self.held[: last + 1]
            parts["backward-elimination RoPE tables, row ids"] = sum(held)
        return parts


def _stored(shape: ModelShape, rows: list[LayerRows], cfg: PlanConfig, e: int) -> _Stored:
    d, ckpt = shape.hidden, cfg.checkpointing
    # A backward-elimination layer stores its input whatever `gradient_checkpointing` says.
    inputs = [e * d * r.stored_rows if ckpt or r.backward else 0.0 for r in rows]
    # The reference row update (index_add) keeps its source for backward: a sparse layer's updates [N, d] (attention,
    # and with mlp="tokens" the MLP's) stay alive until its backward (+4.8 GiB at 32K on Llama-3-8B); under a
    # whole-layer checkpoint (mlp="dense") they are recomputed instead. The Triton update saves only the rows.
    # Dense layers run by lemo's layer forward (tile_attention) update every row; backward elimination has no
    # row update (its forward is dense, without a graph).
    by_lemo = tile_attention(cfg)
    updates = []
    for r in rows:
        n = 2 if cfg.sparsity.mlp == "tokens" or not r.sparse else (0 if ckpt else 1)
        ran = backend(cfg) == "reference" and not (r.backward or r.trimmed) and (r.sparse or by_lemo)
        updates.append(n * e * d * r.attn_rows if ran else 0.0)
    acts = [0.0 if ckpt or r.backward else _layer_saved(shape, r, cfg, e) + u for r, u in zip(rows, updates)]
    held = [backward.held(shape, r.stored_rows, r.attn_rows, e) if r.backward else 0.0 for r in rows]
    offload = cfg.sparse and cfg.sparsity.offload == "cpu"
    return _Stored(inputs, updates if ckpt else [0.0] * len(rows), acts, held, offload)


def input_leaf_kept(cfg: PlanConfig) -> bool:
    """Whether the embedding output stays on the GPU all step apart from the stored layer inputs: HF's gradient
    checkpointing on a PEFT model makes it a leaf that requires grad (`enable_input_require_grads`), which
    autograd holds; under offload no stored input is that tensor, unless lemo frees it
    (`SparsityConfig.free_input_leaf`)."""
    offload = cfg.sparse and cfg.sparsity.offload == "cpu"
    return bool(
        cfg.gradient_checkpointing and offload and not getattr(cfg.sparsity, "free_input_leaf", False)
    )


def _fixed(shape: ModelShape, cfg: PlanConfig, e: int) -> dict[str, float]:
    """What every phase of the step holds: weights, adapter states, RoPE tables and ids, workspaces."""
    ws = cfg.world_size
    fixed = {
        # Under FSDP2 each rank keeps its shard; the adapters and AdamW's state are sharded with them.
        "weights": float(e * shape.total_params()) / ws,
        "LoRA + AdamW": float(ADAM_BYTES * lora_params(shape, cfg)) / ws,
        # RoPE cos/sin [T, head_dim] in the model dtype, input ids, labels and shifted labels (int64).
        "RoPE tables, ids": float((2 * e * shape.head_dim + 24) * cfg.batch_size * cfg.seq_len),
    }
    if cfg.device == "cuda":
        fixed["CUDA workspaces"] = CUDA_WORKSPACE
    if input_leaf_kept(cfg):
        fixed["embedding output (a leaf that requires grad)"] = float(
            e * shape.hidden * cfg.batch_size * cfg.seq_len
        )
    if ws > 1:
        # A layer computes with its weights whole: the one running and the one prefetched behind it.
        fixed["gathered layers (FSDP2)"] = 2.0 * e * (shape.attention_params() + shape.mlp_params())
    return fixed


def _layer_phases(shape: ModelShape, r: LayerRows, cfg: PlanConfig, st: _Stored, fixed: dict, e: int) -> list:
    """The backward of layer r, and for a backward-elimination layer its forward (every row, no graph) too."""
    i, BT = r.index, cfg.batch_size * cfg.seq_len
    parts = {**fixed, **st.alive(i, backward=True)}
    parts.update({f"layer {i} {k}": v for k, v in layer_working(shape, r, cfg, e).items()})
    parts["residual-stream gradient"] = float(e * shape.hidden * BT)
    phases = [(f"backward of layer {i}" + (" (sparse)" if r.sparse else ""), parts)]
    if r.backward:
        transient = backward.forward_transient(shape, r.stored_rows, cfg, e)
        ahead = {
            **fixed,
            **st.alive(i, backward=False),
            f"layer {i} forward (every row, no graph)": transient,
        }
        phases.append((f"forward of layer {i} (sparse, backward elimination)", ahead))
    return phases


def _loss_phases(shape: ModelShape, cfg: PlanConfig, rows: list[LayerRows], st: _Stored, fixed: dict, e: int):
    """The LM head + cross-entropy, then the final norm's backward (full length, in fp32: the peak of a step
    whose layers are fully tiled)."""
    BT, d = cfg.batch_size * cfg.seq_len, shape.hidden
    stored = {**fixed, **st.alive(len(rows) - 1, backward=False, loss=True)}
    scored = scored_rows(cfg, rows)
    loss = {
        **stored,
        "final norm": float(4 * d * BT),
        "LM head + cross-entropy": loss_working(shape, cfg, scored, e),
    }
    norm = {**stored, "final norm backward": rmsnorm_backward(shape, e, liger(cfg)) * BT}
    if (cfg.sparse and cfg.sparsity.segmented_loss and backend(cfg) == "triton") or fused_loss(cfg):
        norm["hidden gradient (from the loss's forward)"] = float(e * d * scored)
    return [("loss (LM head + cross-entropy)", loss), ("backward of the final norm", norm)]


def estimate(shape: ModelShape, cfg: PlanConfig) -> MemoryEstimate:
    """Peak allocated GPU bytes of one training step (the second one: AdamW's moments exist) and host bytes."""
    e = 2 if cfg.dtype == "bf16" else 4
    rows = layer_rows(shape, cfg)
    st = _stored(shape, rows, cfg, e)
    fixed = _fixed(shape, cfg, e)
    phases: list[tuple[str, dict[str, float]]] = []
    if cfg.world_size > 1:
        # Each rank loads the whole model onto its GPU before `fully_shard` splits it.
        phases.append(("loading the weights (before sharding)", {"weights": float(e * shape.total_params())}))
    for r in reversed(rows):
        phases.extend(_layer_phases(shape, r, cfg, st, fixed, e))
    phases.extend(_loss_phases(shape, cfg, rows, st, fixed, e))
    phase, breakdown = max(phases, key=lambda p: sum(p[1].values()))
    sparse = [r.attn_rows / (cfg.batch_size * cfg.seq_len) for r in rows if r.sparse]
    return MemoryEstimate(
        peak=sum(breakdown.values()),
        phase=phase,
        breakdown=breakdown,
        host=sum(st.inputs) if st.offload else 0.0,
        stored_total=sum(st.inputs),
        kept_fraction=sum(sparse) / len(sparse) if sparse else 1.0,
        layers=rows,
    )
