"""Bytes per row (token) that one decoder layer keeps for backward and forms in it, from what autograd saves in an
HF Llama layer with PEFT LoRA (adapters in fp32). Every memory term of the plan is built from these counts
(lemo/plan/memory.py for dense layers and forward elimination, lemo/plan/backward.py for backward elimination).

The attention sublayer is counted in two parts because backward elimination runs them over different rows:
the K/V part (keys and values, what every row contributes) and the query part (queries, the attention output,
the output projection's adapter). A dense layer runs both over all rows, and its input norm once.
"""

from __future__ import annotations

from dataclasses import dataclass

from lemo.config import PlanConfig
from lemo.config.sparsity import uses_sdpa
from lemo.plan.shapes import ModelShape

LORA_BYTES = 4  # PEFT keeps adapters in fp32 (autocast_adapter_dtype) whatever the base dtype
ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
KV = ("k_proj", "v_proj")
QUERY = ("q_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")


# Adapters whose input is a norm's output, which every adapter of the sublayer reads (`normed_input`).
NORMED = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")


@dataclass(frozen=True)
class Lora:
    """What the memory terms need of the adapters: their targets and rank, and whether they keep their input
    as given (`SparsityConfig.share_lora_inputs` under lemo) instead of PEFT's fp32 copy per adapter."""

    targets: tuple[str, ...]
    rank: int
    shared: bool = False


def lora_of(cfg: PlanConfig, traffic: bool = False) -> Lora:
    """The plan's `Lora`: shared inputs where lemo runs (`sparse`) with `share_lora_inputs` on. `traffic`: for the
    bytes a step moves (lemo/plan/time.py), PEFT's either way: the shared path writes and reads the same fp32
    copy, only in backward instead of across the step."""
    shared = not traffic and bool(cfg.sparse and getattr(cfg.sparsity, "share_lora_inputs", False))
    return Lora(tuple(cfg.lora.targets), cfg.lora.rank, shared)


def lora_in(shape: ModelShape, lora: Lora, group: tuple[str, ...], e: int) -> float:
    """Per-row bytes that LoRA adds to a sublayer's saved tensors, and lora_A's output. PEFT's path (bf16 model)
    keeps the input cast to fp32, one copy per adapter; none extra in fp32, where the input is saved anyway.
    Shared (`lora.shared`), an adapter keeps its bf16 input itself: the norm's output once for the adapters it
    feeds (`normed_input`), and the o/down projections' own inputs."""
    extra = 0.0
    for t in lora.targets:
        if t not in group:
            continue
        fan_in, _ = shape.in_out(t)
        if e != LORA_BYTES:
            extra += (0 if t in NORMED else e * fan_in) if lora.shared else LORA_BYTES * fan_in
        extra += LORA_BYTES * lora.rank
    return extra


def liger(cfg: PlanConfig) -> bool:
    """Whether the model runs Liger-Kernel's RMSNorm, SwiGLU and RoPE (`PlanConfig.liger`, where it exists)."""
    return bool(getattr(cfg, "liger", False))


def normed_input(shape: ModelShape, lora, group: tuple[str, ...], e: int, fused: bool = False) -> float:
    """Per-row bytes of an RMSNorm feeding the projections of `group`: its fp32 input (HF upcasts and saves it;
    Liger's kernel saves its input as it is and a fp32 rstd, `fused`), and in fp32 the normed input that the
    adapters of the group share (in bf16 each adapter keeps its own fp32 copy, `lora_in`, unless `lora.shared`)."""
    shared = (
        e * shape.hidden if (e == LORA_BYTES or lora.shared) and any(t in lora.targets for t in group) else 0
    )
    return (e * shape.hidden + 4 if fused else 4 * shape.hidden) + shared


def kv_saved(shape: ModelShape, lora, e: int) -> float:
    """Bytes per key row: post-RoPE k and v, and the k/v adapters' inputs."""
    return e * 2 * shape.kv_dim + lora_in(shape, lora, KV, e)


def query_saved(shape: ModelShape, lora, e: int) -> float:
    """Bytes per query row: post-RoPE q, the attention output (flash/SDPA/lemo's kernels save O(T), no T x T
    matrix) and its fp32 log-sum-exp, and the q/o adapters' inputs."""
    return e * 2 * shape.q_dim + 4 * shape.heads + lora_in(shape, lora, QUERY, e)


def attn_saved(shape: ModelShape, lora, e: int, fused: bool = False) -> float:
    """Bytes per row saved by the attention sublayer of a layer that runs every part over the same rows."""
    qkv = kv_saved(shape, lora, e) + query_saved(shape, lora, e)
    return normed_input(shape, lora, ATTN[:3], e, fused) + qkv


def mlp_saved(shape: ModelShape, lora, e: int, fused: bool = False) -> float:
    """Bytes per row saved by the MLP sublayer: the norm's input (`normed_input`), gate (SiLU input), SiLU(gate)
    and up; Liger's SwiGLU (`fused`) saves gate and up only and recomputes SiLU(gate) in its backward."""
    acts = (2 if fused else 3) * e * shape.intermediate
    return normed_input(shape, lora, MLP[:2], e, fused) + acts + lora_in(shape, lora, MLP, e)


def mlp_grads(shape: ModelShape, e: int, fused: bool = False) -> float:
    """Bytes per row of the MLP gradients formed in backward (d down-input, d SiLU, d gate/up): 3 x [rows, I];
    Liger's SwiGLU (`fused`) writes d gate and d up into its saved gate and up, so only d down-input is new.

    Liger's two saving together, with its RMSNorm's, are (4 - e) d x 2 + e I + 2 e I bytes a row of a dense
    layer's backward: 102,392 on Llama-3-8B in bf16, and the measured peaks of every exact and lemo config differ
    from their Liger twins' by 3.125 GiB at 32K and 1.5625 at 16K, 102,400 a token (e2e_llama3_8b_liger.csv)."""
    return (1 if fused else 3) * e * shape.intermediate


def mlp_working(shape: ModelShape, rows: int, cfg: PlanConfig, e: int) -> dict[str, float]:
    """The MLP sublayer's saved activations and the gradients its backward forms, over `rows` rows."""
    tile = cfg.sparsity.tile_tokens if cfg.sparse else 0
    fused = liger(cfg)
    if tile and rows > tile:
        # Tiled MLP (lemo.memory.tiled_rows around the MLP): the norm input, the MLP's input and, in backward,
        # that input's gradient span the rows; one tile's activations and gradients exist at a time. Liger's
        # kernels run inside the tiles only: what spans the rows is the same with and without them (the CPU
        # probe lists the same full-length tensors at the peak, plan_peak_probe.csv).
        norm_in = normed_input(shape, lora_of(cfg), (), e)  # the norm's own input, without adapter copies
        tile_norm = normed_input(shape, lora_of(cfg), (), e, fused)
        per_tile = (mlp_saved(shape, lora_of(cfg), e, fused) - tile_norm + mlp_grads(shape, e, fused)) * tile
        return {"MLP (tiled)": per_tile + (norm_in + 2 * e * shape.hidden) * rows}
    return {
        "MLP activations+grads": (mlp_saved(shape, lora_of(cfg), e, fused) + mlp_grads(shape, e, fused))
        * rows
    }


def rmsnorm_backward(shape: ModelShape, e: int = 2, fused: bool = False) -> float:
    """Bytes per row alive while an RMSNorm backpropagates. HF's (eager, in fp32): its fp32 input and five fp32
    temporaries of its backward (pow, mean and the products), all alive at once (benchmarks/plan/plan_peak_probe.py
    lists them at the peak of a CPU step with 8B proportions). Liger's kernel (`fused`): its saved input and the
    input's gradient, in the model dtype."""
    return 2 * e * shape.hidden if fused else 4 * shape.hidden + 5 * 4 * shape.hidden


def norm_backward(shape: ModelShape, e: int, fused: bool = False) -> float:
    """Bytes per row of a dense layer's post-attention norm backward: `rmsnorm_backward` and the gradient of the
    MLP's input. The residual stream's gradient is alive too, but the phase counts it on its own ("residual-stream
    gradient"); counting it here as well made up, on the GPU rows, for the embedding output that the plan did not
    count (`input_leaf_kept`), and the CPU step lists one such gradient at this peak (tests/plan/test_cpu_peaks.py).
    With the MLP tiled no other phase of the layer covers it."""
    return rmsnorm_backward(shape, e, fused) + e * shape.hidden


def sdpa_backward(shape: ModelShape, e: int) -> float:
    """Bytes per row that SDPA's (FlashAttention's) backward forms: the output's gradient, dq/dk/dv, an fp32 dq
    accumulator and, with grouped KV heads, dk/dv per query head before the group sum. For the Llama-3-8B shape
    that is 52 KiB per token, as measured (benchmarks/results/attention_backward_probe.csv)."""
    grouped = 2 * e * shape.q_dim if shape.kv_dim < shape.q_dim else 0
    return e * shape.q_dim + e * (shape.q_dim + 2 * shape.kv_dim) + 4 * shape.q_dim + grouped


def attention_sdpa(shape: ModelShape, cfg: PlanConfig, rows: int) -> bool:
    """Whether lemo's layer attention over `rows` rows runs through SDPA (`SparsityConfig.attention_kernel`; a lemo
    without the field ran its Triton kernel), at SDPA's rate and with SDPA's repeated K/V, or lemo's varlen kernel."""
    kernel = getattr(cfg.sparsity, "attention_kernel", "lemo")
    grouped = shape.kv_dim < shape.q_dim
    return backend(cfg) == "triton" and uses_sdpa(kernel, cfg.batch_size, rows, grouped)


def sdpa_repeated_kv(shape: ModelShape, e: int) -> float:
    """Bytes per row that SDPA adds over lemo's kernel in a layer's backward with grouped KV heads: K and V
    repeated for every query head (saved for its backward) and their gradients before the group sum. 32 KiB per
    token for the Llama-3-8B shape: the measured 4.0 GiB at 128K (e2e_llama3_8b_liger.csv, 67e29b8)."""
    return 4 * e * shape.q_dim if shape.kv_dim < shape.q_dim else 0.0


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
