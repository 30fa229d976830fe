"""`SparsityConfig`, the public contract of docs/design.md section 3: how each sparse layer chooses and uses its
token blocks. Validation happens in `__post_init__` and every message names the fix in the spelling a user types
(Python keyword or CLI flag).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from lemo.config.checks import check_choice, check_fraction
from lemo.config.flags import LAYER_SETS, Flag, layer_set, per_layer
from lemo.config.load import DictConfig

SelectionMode = Literal["ratio", "threshold"]
MlpMode = Literal["dense", "tokens", "channels"]
Scorer = Literal["oracle", "predictor", "supervision", "gradient"]
Elimination = Literal["forward", "backward"]
Backend = Literal["auto", "reference", "triton"]
AttentionKernel = Literal["auto", "sdpa", "lemo"]
Offload = Literal["none", "cpu"]

_SELECTIONS = ("ratio", "threshold")
_MLP_MODES = ("dense", "tokens", "channels")
_SCORERS = ("oracle", "predictor", "supervision", "gradient")
_ELIMINATIONS = ("forward", "backward")
_BACKENDS = ("auto", "reference", "triton")
_ATTENTION_KERNELS = ("auto", "sdpa", "lemo")


# attention_kernel="auto" runs SDPA per segment up to this many segments: each segment is one SDPA call (the
# kernel PyTorch picks on a GPU), so a packed batch of many short documents goes to lemo's one-launch varlen kernel.
SDPA_MAX_SEGMENTS = 8
# ... and, with grouped KV heads, up to this many rows: SDPA repeats K and V for every query head, which the
# layer's backward holds with their gradients (4 x rows x H x D: the 4.0 GiB SDPA added at 128K on Llama-3-8B), where
# lemo's kernel reads the grouped heads in place. The longest SDPA-run rows measured.
SDPA_GQA_MAX_ROWS = 131072


def uses_sdpa(kernel: str, segments: int, rows: int = 0, grouped: bool = False) -> bool:
    """Whether the causal attention among a layer's `rows` rows runs SDPA, for `attention_kernel` `kernel`, a batch
    of `segments` segments and `grouped` KV heads, where the backend runs Triton (the reference is SDPA already)."""
    check_choice("attention_kernel", kernel, _ATTENTION_KERNELS)
    if kernel != "auto":
        return kernel == "sdpa"
    return segments <= SDPA_MAX_SEGMENTS and not (grouped and rows > SDPA_GQA_MAX_ROWS)


PAPER_FIELDS: dict[str, Any] = {
    "keep_ratio": 0.4,
    "mlp": "dense",
    "shared_selection": False,
    "loss_tokens": "all",
    "label_priority": False,
    "scorer": "oracle",  # the paper's column sums
    "random_fraction": 0.0,
    "trim_last_layer": False,  # the artifact runs its last layer over every row
    "share_lora_inputs": False,  # the artifact's adapters keep PEFT's fp32 input copies
    "free_input_leaf": False,  # and its checkpointing keeps the embedding output as a leaf that requires grad
    "copy_ngram": 0,  # the paper has no copied-n-gram tier
}


@dataclass
class SparsityConfig(DictConfig):
    """How each sparse layer chooses and uses its token blocks (docs/design.md section 1).

    The defaults are the measured best setting (docs/capability.md): keep half of the blocks, chosen once per
    forward, the labelled blocks first, then the blocks the labels copy 3-grams from (`copy_ngram`), then three
    quarters of the rest by the attention the labelled positions pay them (`scorer="supervision"`) and a quarter
    uniformly at random; eliminated tokens skip the sparse layers entirely, the loss covers the kept positions,
    and the last layer runs only the rows the loss reads.
    `SparsityConfig.paper()` is LeMo's own setting.
    """

    block_size: int = 64
    """Tokens per block; scores and selection work on blocks of this many tokens."""
    keep_ratio: Annotated[float | list[float], Flag(parse=per_layer)] = 0.5
    """Fraction of blocks kept per sparse layer (`selection="ratio"`); one value or one per sparse layer."""
    sparse_layers: Annotated[str | list[int], Flag(parse=layer_set)] = "auto"
    """Layers that eliminate tokens: "auto" (L//2-1 .. L-2, the artifact's), "upper" (L//2-1 .. L-1: the last
    layer too, so the dense layer whose backward sets the GPU peak is one of the lower half, with fewer stored
    inputs above it), "all", "none", or layer indices and inclusive ranges ("15-30" or "1,3-5" on the command
    line)."""
    selection: SelectionMode = "ratio"
    """"ratio": top blocks up to keep_ratio (predictable memory); "threshold": I_n >= threshold * max I."""
    threshold: Annotated[float | list[float], Flag(parse=per_layer)] = 0.1
    """Relative threshold for `selection="threshold"`; one value or one per sparse layer."""
    sink_blocks: int = 1
    """Leading blocks always kept (attention sinks)."""
    local_blocks: int = 1
    """Trailing blocks always kept (the most recent context)."""
    mlp: MlpMode = "tokens"
    """"dense": all tokens run the MLP; "tokens": only kept tokens; "channels": sparse-channel backward."""
    mlp_keep: float = 0.2
    """Fraction of MLP intermediate channels whose activations are kept for backward (`mlp="channels"`)."""
    scorer: Scorer = "supervision"
    """"supervision" (the default, chosen on the capability suite, docs/capability.md): the attention each block
    receives from the positions the loss asks about (labels, or in plain text the positions that repeat a far
    bigram), with q and k rotated by the layer's RoPE: with elimination="forward" read once at the first sparse
    layer's input, with "backward" from the layer's own forward (lemo.sparsity.supervision). "oracle": exact tiled
    block scores (the paper's column sums); "predictor": learned predictors (see `lemo calibrate`); "gradient"
    (elimination="backward" only): chosen in the backward pass, by the norm of the loss's gradient at each block's
    rows of the layer's output, so the rows the loss depends on most are the ones whose update is trained
    (lemo.sparsity.backward)."""
    elimination: Elimination = "forward"
    """"forward" (the paper): eliminated tokens skip the sparse layers, saving forward and backward compute and
    memory, but the loss sees the approximated model. "backward": every token runs every layer exactly as dense
    (the loss is dense's), and each sparse layer spends its backward on its kept rows only; eliminated rows still
    get gradient through the residual and through the keys and values kept queries read (lemo.sparsity.backward).
    Selection is per layer, after the layer's forward (with scorer="gradient", in its backward); `mlp`,
    `loss_tokens` and `shared_selection` do not apply. It composes with `offload` (the stored layer input waits in
    host memory) and `tile_tokens`/`tile_attention` (the row-wise parts of the forward and of the kept rows'
    recompute run in row tiles)."""
    segmented_loss: bool = True
    """Compute LM head + cross-entropy in segments so the full T x V logits never exist at once."""
    loss_chunk: int = 2048
    """Tokens per loss segment."""
    backend: Backend = "auto"
    """Op implementation: "auto" (Triton on CUDA, reference elsewhere), "reference" or "triton"."""
    attention_kernel: AttentionKernel = "auto"
    """Which kernel runs the causal attention among a layer's rows where `backend` runs Triton: "sdpa" (PyTorch's
    scaled_dot_product_attention per segment, with the kernel PyTorch picks), "lemo" (lemo's Triton varlen
    kernel, one launch for every segment) or "auto": SDPA when a batch holds at most 8 segments (one per row
    unless rows are packed) and, with grouped KV heads, at most 128K rows (SDPA repeats K and V per query head:
    4 GiB more at 128K on Llama-3-8B), lemo's kernel otherwise. With SDPA a 128K step took 37.8 s against 50.0 s
    on an H100 (`e2e_llama3_8b_liger.csv`), while lemo's kernel matches SDPA pinned to FlashAttention-2
    (`ops_sparse_attention.csv`). The same attention either way: only speed and memory differ."""
    sparse_in_eval: bool = False
    """Also eliminate tokens when the model is in eval mode (a diagnostic; evaluation is normally dense)."""
    shared_selection: bool = True
    """Choose the kept blocks once, at the first sparse layer of each forward, and keep the same blocks in every
    later sparse layer (scored once; tokens are either processed by all sparse layers or skip them all)."""
    loss_tokens: Literal["all", "kept"] = "kept"
    """Positions in the loss: "all" (the paper), or "kept": only positions the last sparse layer kept, whose
    computation was complete, so the adapter does not learn to compensate for elimination (see docs/quality.md)."""
    label_priority: bool = True
    """Keep the blocks that hold supervised positions (labels other than -100, e.g. the completion of
    prompt/completion data) before any other, within the keep budget, so every labelled position keeps its loss
    and its full computation and elimination is spent on the unsupervised context. When the labelled blocks
    exceed the budget (plain text: every position is labelled) they are chosen among themselves by the rules
    below."""
    random_fraction: float = 0.25
    """Share of the budget left after the forced (and labelled) blocks that goes to blocks drawn uniformly at
    random (torch's default generator, so a resumed run draws what an uninterrupted one would) instead of the
    scorer's best: 0 = the scorer's top blocks (the paper), 1 = random blocks, and no scoring is done at all. The
    default's random quarter keeps exploring blocks the scorer ranks low, so rare evidence is still trained on."""
    score_dilation: int = 0
    """Raise each block's score to the best within this many blocks on either side before choosing (every
    scorer, both elimination modes), so the neighbours of a block the scorer ranks high are kept with it: a
    recall answer needs the quoted sentence and the passage after it, and the labels' attention finds the passage
    far more than the quote (docs/capability.md). 0: each block by its own score."""
    copy_ngram: int = 3
    """Keep the blocks that later tokens copy n-grams of this many tokens from, seen at most 4 times in the row
    (lemo.sparsity.supervision): in prompt/completion rows, right after the labelled blocks, the context blocks
    holding an n-gram the labelled positions repeat (a quoted sentence and the words after it, a key, a name); in
    plain text, first, the earlier occurrences of n-grams repeated at least 256 tokens later. Found from the token
    ids alone. On the capability suite it brought recall from 0.05 to dense LoRA's 0.25 and answer-token accuracy
    to dense's at equal steps, for under 1% more step time (docs/capability.md). The plain-text tier applies only
    with `copy_plain_text`. 0: off."""
    copy_plain_text: bool = False
    """With `copy_ngram`, use the copy tier in plain-text rows too (those with at least half of the positions
    labelled). Off by default: there the tier keeps the sources but not the later text that copies them, which has
    no later repeat of its own, so the end of each row is eliminated most (on `lemo data` multi-key rows the last
    tenth of a row was kept 0.24 of the time against 0.80 without the tier, `selection_bias_copy3_multikey_cpu.csv`),
    and on the capability suite it tied the selection without it (docs/capability.md)."""
    copy_repeats: bool = False
    """With `copy_plain_text`, keep the later text that repeats each far source as well as the source (both ends
    of a long-range copy, the key tokens of LongPPL), so a row's end, which has no later repeat of its own, is not
    left to the budget the sources leave. On `lemo data` multi-key rows that brings the last tenth of a row back to
    0.80 kept (0.24 with the sources alone); on suite v7's plain text the widened 3-gram tier marks 0.99 of the
    blocks, so it chooses almost nothing there (`copy_tier_coverage_v7_cpu.csv`). Not yet trained on the GPU."""
    dense_tail: float = 0.0
    """Share of the last optimizer steps that keep every block, so training ends on the exact model and its full
    loss (random-LTD's schedule grows the kept share to all tokens for the same reason). The loss on the kept
    positions alone leaves plain-text perplexity 2.0% above dense LoRA's at equal steps on the capability suite
    (docs/capability.md); a dense tail trains the rest: 0.2 brought it to 1.0104x (0.15 with `copy_plain_text`:
    1.0097x), with a mean plain-text step of 0.75x Liger exact's at 32K instead of 0.687x (0.742x with 0.15).
    The tail steps cost a dense step's time, and `lemo plan`
    sizes the GPU memory for them: a dense step's (0.97x Liger exact's at 32K on Llama-3-8B), unless `offload` is
    "cpu" (0.73x, under the sparse steps' 0.83x without it, at a mean step of 0.779x instead of 0.746x with a 15%
    tail; e2e_llama3_8b_tail_offload_text.csv). 0: every step sparse."""
    offload: Offload = "none"
    """Where checkpointed layer inputs wait for backward: "none" (on the GPU) or "cpu" (pinned host memory,
    copied out on a side stream and prefetched back one layer ahead of its recompute). With "cpu" lemo
    checkpoints every decoder layer itself, dense layers too, so it implies gradient checkpointing; sparse layers
    store only their kept rows, which is what lets elimination go past the host-memory limit of an exact stack."""
    tile_tokens: int = 0
    """Run each layer's MLP over tiles of this many rows, recomputed tile by tile in backward, so one layer's MLP
    working set is bounded by the tile instead of the sequence (0: untiled). Dense layers too; exact."""
    tile_attention: bool = False
    """With `tile_tokens`, also tile the row-wise rest of each layer: norms, q/k/v/o projections, RoPE and the
    residual adds, so only q, k, v and the attention output exist at full length (dense layers then run lemo's
    forward with every row kept). About 2.3x less GPU memory per token on Llama-3-8B, for 1.3-1.44x the step time
    of MLP-only tiling (docs/longest.md): turn it on when MLP tiling and offload are not enough."""
    inplace_residual: bool = True
    """Add a sparse layer's update into the residual stream in place (permutation-free, no full-length copy) when
    training with mlp="tokens". Turn off if a hook of yours keeps a layer's input tensor: it would see the update."""
    share_lora_inputs: bool = True
    """LoRA adapters in fp32 on a bf16 model: PEFT casts each adapter's input to fp32 and autograd keeps that copy
    for lora_A's gradient, one per adapter (q, k and v each copy the same input; 2.0 GiB of a 32K step's peak on
    Llama-3-8B). On: lemo's adapters keep the input as it is, shared, and upcast it again in backward
    (lemo.integrations.lora_inputs). The same values in every output and gradient. Adapters with dropout or a variant
    (DoRA) keep PEFT's path."""
    free_input_leaf: bool = True
    """Gradient checkpointing on a PEFT model turns the frozen embedding's output into a leaf that requires grad
    (transformers' `enable_input_require_grads`), and autograd then holds that [B, T, d] tensor all step and fills
    an equally large `.grad` that nothing reads. Under offload, where the layer inputs wait in host memory, it is
    one full-length hidden state on the GPU through the whole backward (1 GiB at 128K on Llama-3-8B). On: the
    leaf is replaced by the same values that still require grad but that no autograd node keeps
    (lemo.integrations.transformers.input_leaf). Outputs and adapter gradients are unchanged."""
    trim_last_layer: bool = True
    """In training, run the model's last decoder layer only for the positions the loss reads: their queries,
    attention output and MLP, against the keys and values of every row. No other row's output reaches the loss,
    so the loss and every gradient equal the full layer's, while the layer's work and backward memory scale with
    the scored rows (lemo.sparsity.trimmed). Active when lemo's loss forward gets labels (TRL's fused head included)
    and the last layer is not sparse; off: every row, as HF runs it."""

    def dense_step(self, step: int, steps: int) -> bool:
        """Whether optimizer step `step` (0-based) of `steps` is one of the `dense_tail` steps that keep every block."""
        return self.dense_tail > 0 and step >= steps - round(steps * self.dense_tail)

    def __post_init__(self) -> None:
        if not isinstance(self.block_size, int) or self.block_size < 1:
            raise ValueError(f"block_size={self.block_size!r} must be a positive integer such as 64.")
        check_choice("selection", self.selection, _SELECTIONS)
        check_choice("mlp", self.mlp, _MLP_MODES)
        check_choice("scorer", self.scorer, _SCORERS)
        check_choice("elimination", self.elimination, _ELIMINATIONS)
        check_choice("backend", self.backend, _BACKENDS)
        check_choice("attention_kernel", self.attention_kernel, _ATTENTION_KERNELS)
        check_choice("loss_tokens", self.loss_tokens, ("all", "kept"))
        for name in ("keep_ratio", "threshold"):
            value = getattr(self, name)
            values = value if isinstance(value, (list, tuple)) else [value]
            if isinstance(value, (list, tuple)) and not value:
                raise ValueError(f"{name}=[] is empty; pass one number or one per sparse layer.")
            for v in values:
                check_fraction(name, v, allow_zero=(name == "threshold"))
            if isinstance(value, tuple):
                setattr(self, name, list(value))
        check_fraction("mlp_keep", self.mlp_keep)
        check_fraction("random_fraction", self.random_fraction, allow_zero=True)
        check_fraction("dense_tail", self.dense_tail, allow_zero=True)
        if not isinstance(self.copy_ngram, int) or self.copy_ngram < 0 or self.copy_ngram == 1:
            raise ValueError(
                f"copy_ngram={self.copy_ngram!r} must be 0 (off) or an n-gram length of at least 2 such as 3 "
                "(--copy-ngram 3): single tokens repeat everywhere."
            )
        if self.copy_plain_text and not self.copy_ngram:
            raise ValueError(
                "copy_plain_text=True needs copy_ngram (an n-gram length such as 3, --copy-ngram 3): with "
                "copy_ngram=0 there is no copy tier to use in plain text."
            )
        if self.copy_repeats and not self.copy_plain_text:
            raise ValueError(
                "copy_repeats=True needs copy_plain_text=True (--copy-plain-text): it widens the plain-text copy "
                "tier, which is off without it."
            )
        if not isinstance(self.score_dilation, int) or self.score_dilation < 0:
            raise ValueError(
                f"score_dilation={self.score_dilation!r} must be a non-negative number of blocks such as 1 "
                "(--score-dilation 1); 0 scores each block alone."
            )
        self._check_elimination()  # first: a scorer that needs another elimination mode names that fix first
        # supervision is the default scorer, so random_fraction=1.0 with it means what it says: random blocks
        if self.scorer in ("predictor", "gradient") and self.random_fraction >= 1.0:
            raise ValueError(
                f"scorer={self.scorer!r} has no effect with random_fraction=1.0 (random blocks, no scoring); "
                "pass random_fraction=0.0 (--random-fraction 0) to keep the scorer's top blocks, or a share such "
                "as 0.25 to mix in random ones."
            )
        for name in ("sink_blocks", "local_blocks"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}={v!r} must be a non-negative integer.")
        check_choice("offload", self.offload, ("none", "cpu"))
        if not isinstance(self.tile_tokens, int) or self.tile_tokens < 0:
            raise ValueError(
                f"tile_tokens={self.tile_tokens!r} must be a non-negative number of rows such as 8192 (0: untiled)."
            )
        if self.tile_attention and self.tile_tokens <= 0:
            raise ValueError(
                "tile_attention=True needs tile_tokens > 0 (--tile-tokens 8192): the size of a tile."
            )
        if not isinstance(self.loss_chunk, int) or self.loss_chunk < 1:
            raise ValueError(
                f"loss_chunk={self.loss_chunk!r} must be a positive number of tokens such as 2048."
            )
        sl = self.sparse_layers
        if isinstance(sl, str):
            if sl not in LAYER_SETS:
                raise ValueError(
                    f"sparse_layers={sl!r} is not understood; use 'auto', 'upper', 'all', 'none' or a list of layer "
                    "indices."
                )
        else:
            layers = list(sl)
            if any(not isinstance(i, int) or i < 0 for i in layers) or len(set(layers)) != len(layers):
                raise ValueError(f"sparse_layers={sl!r} must hold distinct non-negative layer indices.")
            self.sparse_layers = sorted(layers)

    def _check_elimination(self) -> None:
        if self.elimination != "backward":
            if self.scorer == "gradient":
                raise ValueError(
                    "scorer='gradient' chooses rows in the backward pass, which only elimination='backward' has; "
                    "pass elimination='backward' (--elimination backward, with a --random-fraction below 1 such as "
                    "0.25) or another scorer."
                )
            return
        if self.mlp == "channels":
            # The channel-sparse MLP backward saves its own activations; backward elimination recomputes the
            # kept rows' MLP instead, so there is nothing for it to thin.
            raise ValueError(
                "elimination='backward' does not combine with mlp='channels'; use mlp='tokens' (the default) or "
                "elimination='forward'."
            )

    @classmethod
    def paper(cls, **overrides: Any) -> SparsityConfig:
        """LeMo's setting (the artifact's): per-layer oracle top-k at keep 0.4, dense MLP, loss on every position.

        Benchmarks that name their changes relative to the paper start here, so a change of the defaults above
        never changes what they measure.
        """
        return cls(**{**PAPER_FIELDS, **overrides})

    def describe_selection(self) -> str:
        """How the kept blocks are chosen, in words (for logs and `lemo plan`): the scorer and its share of the
        free budget, e.g. "scorer=supervision + 25% random, labelled blocks first, copied 3-gram sources next (prompt/completion
        rows)"."""
        if self.selection == "threshold":
            how = f"scorer={self.scorer} above {self.threshold} of the best"
        elif self.random_fraction >= 1.0:
            how = "random blocks"
        else:
            how = f"scorer={self.scorer}" + (
                f" + {self.random_fraction:.0%} random" if self.random_fraction else ""
            )
        if self.scorer == "gradient" and self.random_fraction < 1.0:
            how += ", chosen in each layer's backward"
        how += ", labelled blocks first" if self.label_priority else ""
        if self.copy_ngram:
            how += f", copied {self.copy_ngram}-gram sources next"
            how += "" if self.copy_plain_text else " (prompt/completion rows)"
            how += " and their far repeats (plain text)" if self.copy_repeats else ""
        return how

    def resolve_layers(self, num_layers: int) -> list[int]:
        """The sparse layer indices for a model with `num_layers` decoder layers."""
        sl = self.sparse_layers
        if sl == "auto":
            # The artifact's layout: the first half dense, the last layer dense (it feeds the LM head).
            return list(range(max(num_layers // 2 - 1, 0), max(num_layers - 1, 1)))
        if sl == "upper":
            return list(range(max(num_layers // 2 - 1, 0), num_layers))
        if sl == "all":
            return list(range(num_layers))
        if sl == "none":
            return []
        bad = [i for i in sl if i >= num_layers]
        if bad:
            raise ValueError(
                f"sparse_layers lists {bad}, but the model has only {num_layers} layers (0..{num_layers - 1})."
            )
        return list(sl)

    def per_layer(self, name: str, layers: list[int], num_layers: int) -> dict[int, float]:
        """Map each sparse layer to its value of `keep_ratio` or `threshold`.

        A list may give one value per sparse layer, or one per model layer (then indexed by layer number).
        """
        value = getattr(self, name)
        if not isinstance(value, list):
            return dict.fromkeys(layers, float(value))
        if len(value) == len(layers):
            return {layer: float(v) for layer, v in zip(layers, value)}
        if len(value) == num_layers:
            return {layer: float(value[layer]) for layer in layers}
        raise ValueError(
            f"{name} has {len(value)} values, but there are {len(layers)} sparse layers and {num_layers} layers; "
            f"give one value, one per sparse layer, or one per layer."
        )
