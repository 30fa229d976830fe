"""The benchmark's configurations (design.md section 5), and `configure()`, which puts a model in one of them.

The table itself is plain data (no torch at import), so scripts such as benchmarks/plan/plan_validation.py can read
`CONFIGS` cheaply; `configure()` imports lemo's integrations when it runs.
"""

from __future__ import annotations

from typing import Any

from lemo.config import PAPER_FIELDS, SparsityConfig

TILE_ALL = {"tile_tokens": "tile", "tile_attention": True}
SHARED = {"shared_selection": True, "loss_tokens": "kept"}  # the quality-holding setting of docs/quality.md
DEFAULT = {
    **SHARED,
    "label_priority": True,
    "random_fraction": 1.0,
}  # lemo's default selection (with mlp tokens), as measured before the trimmed last layer
# The exact stacks run every row of the last layer, as HF does (lemo's `trim_last_layer` is part of lemo's side).
# and keep PEFT's fp32 copies of each adapter's input (`share_lora_inputs`, lemo's too) and the embedding output as
# the leaf that PEFT's checkpointing makes it (`free_input_leaf`).
EXACT = {"trim_last_layer": False, "share_lora_inputs": False, "free_input_leaf": False}
TRIM = {"trim_last_layer": True}  # SparsityConfig.paper() leaves it off: the "-trim" configs turn it on
# `SparsityConfig()` as it is at this commit, over the paper's fields that the sparse configs start from (the keep
# ratio and MLP mode come from the run and the config's own column): "default+gc" measures what a user gets.
PRODUCT = {k: getattr(SparsityConfig(), k) for k in PAPER_FIELDS if k not in ("keep_ratio", "mlp")}
COPY_TEXT = {**PRODUCT, "copy_ngram": 3, "copy_plain_text": True}  # the copy tier in plain text too
# name: (checkpointing: None | "all" | "sparse", segmented loss, token elimination, MLP mode, extra options).
# "sparse" checkpoints only the sparse layers (they store their kept rows); the dense half stores activations.
# Extra options: SparsityConfig fields, plus "backend" (overrides --backend) and "s2" (LongLoRA's attention).
CONFIGS = {
    "lora": (None, False, False, None, {}),
    "lora+gc": ("all", False, False, None, {}),
    "exact": ("all", True, False, None, EXACT),
    "longlora": (None, False, False, None, {"s2": True}),
    "longlora+gc": ("all", False, False, None, {"s2": True}),
    "lemo": (None, True, True, "dense", {}),
    "lemo+gc": ("all", True, True, "dense", {}),
    "lemo-tokens": (None, True, True, "tokens", {}),
    "lemo-tokens+gc": ("all", True, True, "tokens", {}),
    "lemo-shared": (None, True, True, "tokens", SHARED),
    "lemo-shared+gc": ("all", True, True, "tokens", SHARED),
    "lemo-shared+sgc": ("sparse", True, True, "tokens", SHARED),
    # ablation of lemo-shared+gc: one part off at a time (elimination off is `exact`)
    "abl-mlp-dense+gc": ("all", True, True, "dense", SHARED),
    "abl-loss-all+gc": ("all", True, True, "tokens", {"shared_selection": True}),
    "abl-hf-loss+gc": ("all", False, True, "tokens", {"shared_selection": True}),
    "abl-reference+gc": ("all", True, True, "tokens", {**SHARED, "backend": "reference"}),
    "abl-copy-residual+gc": ("all", True, True, "tokens", {**SHARED, "inplace_residual": False}),
    # capability-holding selections (docs/capability.md): labelled blocks first, then random or mixed context
    "default+gc": (
        "all",
        True,
        True,
        "tokens",
        PRODUCT,
    ),  # the library's default, whatever it is at this commit
    # the default with the copied n-grams' blocks kept after the labels (SparsityConfig.copy_ngram): its step,
    # the n-gram matching included (random-token rows match little, so the kept blocks are the default's), in both
    # forms. Since copy_ngram=3 became SparsityConfig()'s (2026-12-06, prompt/completion rows only) it equals
    # "default+gc" on prompt/completion rows; "default-nocopy+gc" is the default before it
    "default-copy3+gc": ("all", True, True, "tokens", COPY_TEXT),
    "default-nocopy+gc": ("all", True, True, "tokens", {**PRODUCT, "copy_ngram": 0}),
    # `--copy-plain-text --dense-tail 0.15`, the setting that meets the plain-text perplexity target, with its layer
    # inputs in host memory (`--offload cpu`): its sparse steps, and "-tail" its dense-tail steps (every block kept,
    # a config's own keep_ratio winning over --keep-ratio), with and without offload. Offload is exact, so it only
    # moves the tail's GPU peak (a dense step's) and costs copy time.
    "default-copy3+offload": ("all", True, True, "tokens", {**COPY_TEXT, "offload": "cpu"}),
    "default-copy3-tail+gc": ("all", True, True, "tokens", {**COPY_TEXT, "keep_ratio": 1.0}),
    "default-copy3-tail+offload": (
        "all",
        True,
        True,
        "tokens",
        {**COPY_TEXT, "keep_ratio": 1.0, "offload": "cpu"},
    ),
    "lemo-random+gc": ("all", True, True, "tokens", DEFAULT),
    "lemo-mix+gc": ("all", True, True, "tokens", {**SHARED, "label_priority": True, "random_fraction": 0.5}),
    "lemo-prio+gc": ("all", True, True, "tokens", {**SHARED, "label_priority": True}),
    # the default with the trimmed last layer (the library default from 2026-12-05): the last layer runs only the
    # rows the loss scores, so its backward stops being the peak (lemo.sparsity.trimmed)
    "lemo-trim+gc": ("all", True, True, "tokens", {**DEFAULT, **TRIM}),
    # the default with the last layer sparse too (sparse_layers="upper"): the peak moves to a lower dense layer
    "lemo-upper+gc": ("all", True, True, "tokens", {**DEFAULT, "sparse_layers": "upper"}),
    # the default with the supervision scorer choosing 75% of the free budget (the blocks the labels attend to)
    "lemo-sup+gc": (
        "all",
        True,
        True,
        "tokens",
        {**DEFAULT, "scorer": "supervision", "random_fraction": 0.25},
    ),
    # the same with the trimmed last layer: the supervision selector's step time as a default would run it
    "lemo-sup-trim+gc": (
        "all",
        True,
        True,
        "tokens",
        {**DEFAULT, **TRIM, "scorer": "supervision", "random_fraction": 0.25},
    ),
    # memory for the longest T (docs/longest.md): checkpointed inputs in pinned host memory, MLP in row tiles;
    # "exact+offload*" is the same code with elimination off, the Unsloth/ALST-style exact stack
    "exact+offload": ("all", True, False, None, {**EXACT, "offload": "cpu"}),
    "exact+offload+tiled": ("all", True, False, None, {**EXACT, "offload": "cpu", "tile_tokens": "tile"}),
    "lemo+offload": ("all", True, True, "tokens", {**DEFAULT, "offload": "cpu"}),
    "lemo+offload+tiled": ("all", True, True, "tokens", {**DEFAULT, "offload": "cpu", "tile_tokens": "tile"}),
    # +tiled-attn: the whole layer but the attention core in row tiles (tile_attention)
    "exact+offload+tiled-attn": ("all", True, False, None, {**EXACT, "offload": "cpu", **TILE_ALL}),
    "lemo+offload+tiled-attn": ("all", True, True, "tokens", {**DEFAULT, "offload": "cpu", **TILE_ALL}),
    "default+offload+tiled": (
        "all",
        True,
        True,
        "tokens",
        {**PRODUCT, "offload": "cpu", "tile_tokens": "tile"},
    ),
    "default+offload+tiled-attn": ("all", True, True, "tokens", {**PRODUCT, "offload": "cpu", **TILE_ALL}),
    # the same on the reference backend, whose attention is PyTorch's SDPA (FlashAttention) per segment instead of
    # lemo's Triton varlen kernel: the plan's rates put SDPA at 470 TFLOP/s against 323 (H200), and at 128K the
    # attention is most of the step; the other reference ops cost memory and time of their own
    "abl-default-reference+offload+tiled-attn": (
        "all",
        True,
        True,
        "tokens",
        {**PRODUCT, "offload": "cpu", **TILE_ALL, "backend": "reference"},
    ),
    # lemo's Triton varlen kernel for the attention instead of SDPA (attention_kernel="lemo", the choice before
    # 2026-12-05): for the layers' attention alone, what the reference ablation above measured
    "abl-default-lemo-attn+gc": ("all", True, True, "tokens", {**PRODUCT, "attention_kernel": "lemo"}),
    "abl-default-lemo-attn+offload+tiled-attn": (
        "all",
        True,
        True,
        "tokens",
        {**PRODUCT, "offload": "cpu", **TILE_ALL, "attention_kernel": "lemo"},
    ),
    "exact-lemo-attn+offload+tiled-attn": (
        "all",
        True,
        False,
        None,
        {**EXACT, "offload": "cpu", **TILE_ALL, "attention_kernel": "lemo"},
    ),
    "lemo-trim+offload+tiled-attn": (
        "all",
        True,
        True,
        "tokens",
        {**DEFAULT, **TRIM, "offload": "cpu", **TILE_ALL},
    ),
    # backward elimination (exact forward, the kept rows' backward): random blocks, the supervision scorer, and
    # the gradient scorer
    "lemo-bwd+gc": (
        "all",
        True,
        True,
        "tokens",
        {"elimination": "backward", "label_priority": True, "random_fraction": 1.0},
    ),
    "lemo-bwd-sup+gc": (
        "all",
        True,
        True,
        "tokens",
        {"elimination": "backward", "label_priority": True, "scorer": "supervision", "random_fraction": 0.25},
    ),
    # rows chosen in each layer's backward by the loss gradient at its output (75% of the free budget, 25% random)
    "lemo-bwd-grad+gc": (
        "all",
        True,
        True,
        "tokens",
        {"elimination": "backward", "label_priority": True, "scorer": "gradient", "random_fraction": 0.25},
    ),
    # learned predictors instead of the oracle (untrained, artifact shape: time and memory do not depend on values)
    "lemo-pred+gc": ("all", True, True, "dense", {"scorer": "predictor"}),
    "lemo-pred-shared+gc": ("all", True, True, "tokens", {"scorer": "predictor", **SHARED}),
}
# Every exact and lemo config again on a Liger-patched model (Liger-Kernel's RoPE, RMSNorm, SwiGLU and fused
# linear cross-entropy, as `apply_liger_kernel_to_llama` and `use_liger_kernel=True` give): "liger-" + its name.
# The loss: "liger-exact*" keep Liger's fused loss (no segmented loss: Liger's is the exact stack users have);
# "liger-lemo*" keep lemo's segmented loss, which replaces Liger's forward, because label priority needs the
# labels before the decoder runs and the loss covers only the kept positions (lemo.integrations.liger).
LIGER = {
    "liger-" + name: (gc, segmented and sparse, sparse, mlp, {**extra, "liger": True})
    for name, (gc, segmented, sparse, mlp, extra) in CONFIGS.items()
    if sparse or name.startswith("exact")
}
CONFIGS.update(LIGER)
# The predictor set of the current config, for its timings (step.run_one reads it); one process, one model.
PREDICTORS: list[Any] = []


def _decoder_layers(model: Any) -> Any:
    return model.get_base_model().model.layers


def configure(
    model: Any, name: str, keep_ratio: float, backend: str, tile: int = 8192, sharded: bool = False
) -> None:
    """Put `model` in configuration `name`, undoing whatever the previous configuration did. `sharded`: the
    model is under FSDP2, where lemo's in-place residual update is off (as `lemo finetune` does)."""
    # lemo's layers, not the top-level package: `import lemo` would pull in the cli layer above this one.
    from lemo.config import SparsityConfig
    from lemo.integrations.transformers import (
        apply,
        disable_shifted_sparse_attention,
        enable_shifted_sparse_attention,
        remove,
    )
    from lemo.integrations.transformers.loading import enable_gradient_checkpointing

    checkpointing, segmented, sparse, mlp, extra = CONFIGS[name]
    extra = dict(extra)
    backend = extra.pop("backend", backend)
    s2 = extra.pop("s2", False)
    liger = extra.pop("liger", False)
    if extra.get("tile_tokens") == "tile":
        extra["tile_tokens"] = tile
    if sharded:
        extra["inplace_residual"] = False
    remove(model)  # lemo first: its forward wraps Liger's
    _set_liger(model, liger)
    disable_shifted_sparse_attention(model)
    if checkpointing:
        enable_gradient_checkpointing(model)
    else:
        # transformers after 5.17 renamed it (the old name warns); the oldest supported has only the old one.
        disable = (
            getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
        )
        disable()
    if s2:
        enable_shifted_sparse_attention(model, group_fraction=0.25)
    PREDICTORS.clear()
    if sparse:
        # Every config names its changes from the paper's setting, so new library defaults leave the rows' meaning.
        cfg = SparsityConfig.paper(
            **{
                "keep_ratio": keep_ratio,
                "sparse_layers": "auto",
                "mlp": mlp,
                "backend": backend,
                "segmented_loss": segmented,
                **extra,  # a config's own options win (e.g. sparse_layers="upper")
            }
        )
        predictors = None
        if cfg.scorer == "predictor":
            from lemo.config import PredictorConfig
            from lemo.predictor import PredictorSet

            mc = model.config
            head = mc.hidden_size // mc.num_attention_heads
            pcfg = PredictorConfig(d_model=mc.hidden_size, slice_dim=head, block_size=cfg.block_size)
            layers = cfg.resolve_layers(mc.num_hidden_layers)
            param = next(model.parameters())
            predictors = PredictorSet(pcfg, layers).to(param.device, param.dtype)
            PREDICTORS.append(predictors)
        apply(model, cfg, predictors=predictors)
        if checkpointing == "sparse":
            sparse_set = set(cfg.resolve_layers(model.config.num_hidden_layers))
            for i, layer in enumerate(_decoder_layers(model)):
                layer.gradient_checkpointing = i in sparse_set
    elif segmented or extra:
        # Elimination off: lemo's segmented loss, offload and tiling alone (the loss stays the model's own, Liger's
        # fused one, when `segmented` is off).
        if not segmented:
            extra["loss_tokens"] = "all"  # "kept" positions are lemo's segmented loss's to choose
        cfg = SparsityConfig(sparse_layers="none", segmented_loss=segmented, backend=backend, **extra)
        apply(model, cfg)


def _set_liger(model: Any, on: bool) -> None:
    """Liger-patch `model` or undo it (lemo already removed); an error naming the extra when it is missing."""
    from lemo.integrations.liger import apply_liger, is_liger_applied, remove_liger

    if on and not is_liger_applied(model):
        apply_liger(model)
    elif not on:
        remove_liger(model)
