"""Reversible, instance-level patching of an HF causal LM: `apply`, `remove`, `stats`.

Nothing is patched on classes or in source: decoder layers get instance `forward`s (lemo.integrations.transformers
.layers: the sparse ones, the trimmed last one, with offload or tiling the dense ones), the decoder stack a pre-hook
(to see the 2D attention mask and start a new step), and the CausalLM an instance `forward` for the segmented
loss. `remove` deletes exactly those, so the model is bit-identical to before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from lemo.config import SparsityConfig
from lemo.integrations.lora_inputs import keep_lora_inputs, restore_lora_inputs
from lemo.integrations.transformers.archs import ArchSpec, spec_for
from lemo.integrations.transformers.contract import check_layer
from lemo.integrations.transformers.input_leaf import InputLeafHook
from lemo.integrations.transformers.layers import GC_SUSPENDED, patch_layers, patch_trim
from lemo.integrations.transformers.loss import make_label_forward, make_loss_forward
from lemo.memory import HostOffloader
from lemo.sparsity import BlockScorer, OracleScorer, SparsityState

log = logging.getLogger(__name__)
_ATTR = "_lemo_applied"


@dataclass
class _Applied:
    config: SparsityConfig
    predictors: Any
    state: SparsityState
    layers: list[
        nn.Module
    ]  # every layer with a lemo forward: the sparse ones, and with offload the dense ones
    previous_forwards: list[Any]  # an instance forward that was there before us, or None
    previous_model_forward: Any
    hook: Any
    end_hook: Any
    spec: ArchSpec
    extras: dict[str, Any] = field(default_factory=dict)
    tiled: list[tuple[nn.Module, Any]] = field(default_factory=list)  # (mlp, its previous instance forward)
    lora_inputs: list[Any] = field(
        default_factory=list
    )  # what lemo.integrations.lora_inputs changed, to undo
    input_leaf: InputLeafHook | None = None  # `free_input_leaf`'s hook on the input embedding


def causal_lm(model: nn.Module) -> nn.Module:
    """The HF CausalLM inside `model` (unwraps PEFT's PeftModel / LoraModel)."""
    inner = model
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    if not hasattr(inner, "config") or not hasattr(inner.config, "model_type"):
        raise TypeError(
            f"expected a Hugging Face causal LM (or a PEFT model around one), got {type(model).__name__}."
        )
    return inner


def _scorer(config: SparsityConfig, predictors: Any) -> BlockScorer:
    if config.scorer in ("oracle", "supervision", "gradient"):
        # "supervision" and "gradient" score inside the sparse layers (backward elimination's forward or its
        # backward pass); the oracle stays for threshold selection.
        return OracleScorer(config.backend)
    if predictors is None:
        raise ValueError(
            "scorer='predictor' needs predictors: run `lemo calibrate` once, then "
            "lemo.apply(model, cfg, predictors=lemo.load_predictors(dir)) (or pass --predictors DIR)."
        )
    return predictors.as_scorer() if hasattr(predictors, "as_scorer") else predictors


def _install_hooks(
    decoder: nn.Module,
    base: nn.Module,
    state: SparsityState,
    patched: list[nn.Module],
    trimmed: nn.Module | None = None,
    input_leaf: InputLeafHook | None = None,
) -> tuple[Any, Any]:
    """The decoder's pre-hook (starts a step) and post-hook (ends it): their handles. `patched` checkpoint
    themselves in every training forward; `trimmed` (the last layer, when it has only the trimmed forward) only
    in forwards that trim it, the others are HF's."""

    def begin_step(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        state.begin_forward(mask)
        if input_leaf is not None:
            input_leaf.refresh()  # after any hook that makes the embedding output a leaf
        # Layer outputs recorded for output_hidden_states must not be updated in place by the next layer.
        state.keep_layer_inputs = bool(
            kwargs.get("output_hidden_states", getattr(base.config, "output_hidden_states", False))
        )
        # Recorded hidden states or attentions would show the trimmed layer's pass-through rows: run it whole.
        if state.keep_layer_inputs or kwargs.get("output_attentions") or not _module.training:
            state.loss_rows = None
        trim = [trimmed] if trimmed is not None and state.loss_rows is not None else []
        for layer in [*patched, *trim]:
            # Older transformers checkpoint in the layer's __call__, around our forward: switch that off for this
            # forward (the flag is read at call time) and let the sparse forward checkpoint only the kept rows.
            if getattr(layer, "gradient_checkpointing", False):
                layer.gradient_checkpointing = False
                layer.__dict__[GC_SUSPENDED] = True

    def end_step(_module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        # One forward's labels and evidence; a recompute reuses the cached selection.
        state.label_mask = state.query_mask = state.evidence_mask = state.loss_rows = state.copy_mask = None
        state.query_far = False
        for layer in [*patched, *([trimmed] if trimmed is not None else [])]:
            if layer.__dict__.pop(GC_SUSPENDED, False):
                layer.gradient_checkpointing = True

    hook = decoder.register_forward_pre_hook(begin_step, with_kwargs=True)
    # always_call: the flags come back even when the forward raises (out of memory in a length search).
    end_hook = decoder.register_forward_hook(end_step, with_kwargs=True, always_call=True)
    return hook, end_hook


def _log_applied(
    config: SparsityConfig, state: SparsityState, sparse: list[int], n: int, tiled: list
) -> None:
    log.info("lemo: token elimination on %d of %d layers (%s)", len(sparse), n, config.describe_selection())
    if state.offloader is not None or tiled:
        log.info(
            "lemo: checkpointed layer inputs in %s memory; MLP %s",
            "host" if state.offloader is not None else "GPU",
            (
                f"and {'the whole layer' if config.tile_attention else 'MLP'} in tiles of {config.tile_tokens} rows"
            )
            if tiled
            else "untiled",
        )


def apply(model: nn.Module, config: SparsityConfig | None = None, predictors: Any = None) -> nn.Module:
    """Turn on token elimination in `model` (an HF causal LM, plain or PEFT-wrapped), in place.

    Idempotent: applying the same config again changes nothing; a different config replaces the old one.
    Returns the same `model` object for chaining.
    """
    config = config if config is not None else SparsityConfig()
    if not isinstance(config, SparsityConfig):
        raise TypeError(f"config must be a lemo.SparsityConfig, got {type(config).__name__}.")
    base = causal_lm(model)
    spec = spec_for(base.config.model_type)
    applied: _Applied | None = base.__dict__.get(_ATTR)
    if applied is not None:
        if applied.config == config and applied.predictors is predictors:
            return model
        remove(model)
    scorer = _scorer(config, predictors)
    decoder = getattr(base, spec.decoder)
    layers = getattr(decoder, spec.layers)
    n = len(layers)
    state = SparsityState.from_config(config, n)
    sparse = state.layers
    state.offloader = HostOffloader() if config.offload == "cpu" else None
    # Every layer of a model is the same class: checking one that lemo runs checks the rest.
    for i in sparse[:1] or ([n - 1] if config.trim_last_layer else []):
        check_layer(layers[i], spec, base.config)
    patched, previous, tiled = patch_layers(layers, sparse, spec, base.config, config, state, scorer)
    always = list(patched)  # lemo's forward checkpoints these in every training forward
    trimmed = patch_trim(layers, sparse, spec, base.config, config, state, patched, previous)
    input_leaf = InputLeafHook(base) if config.free_input_leaf else None
    hook, end_hook = _install_hooks(
        decoder, base, state, always, trimmed if not any(p is trimmed for p in always) else None, input_leaf
    )
    previous_model_forward = base.__dict__.get("forward")
    if config.loss_tokens == "kept" and not config.segmented_loss:
        raise ValueError("loss_tokens='kept' works through the segmented loss; set segmented_loss=True.")
    if config.segmented_loss:
        base.forward = make_loss_forward(base, decoder, config, state)
    elif config.label_priority:
        base.forward = make_label_forward(base, state)
    lora_inputs = keep_lora_inputs(model) if config.share_lora_inputs else []
    base.__dict__[_ATTR] = _Applied(
        config,
        predictors,
        state,
        patched,
        previous,
        previous_model_forward,
        hook,
        end_hook,
        spec,
        tiled=tiled,
        lora_inputs=lora_inputs,
        input_leaf=input_leaf,
    )
    _log_applied(config, state, sparse, n, tiled)
    return model


def remove(model: nn.Module) -> nn.Module:
    """Undo `apply`: the model computes exactly what it computed before. A no-op on an unpatched model."""
    base = causal_lm(model)
    applied: _Applied | None = base.__dict__.pop(_ATTR, None)
    if applied is None:
        return model
    for layer, prev in zip(applied.layers, applied.previous_forwards):
        del layer.forward
        if prev is not None:
            layer.forward = prev
    if applied.state.offloader is not None:
        applied.state.offloader.release()
    for mlp, prev in applied.tiled:
        del mlp.forward
        if prev is not None:
            mlp.forward = prev
    applied.hook.remove()
    applied.end_hook.remove()
    if applied.input_leaf is not None:
        applied.input_leaf.remove()
    restore_lora_inputs(applied.lora_inputs)
    current = base.__dict__.get("forward")
    if (
        current is not None
        and current is not applied.previous_model_forward
        and not getattr(current, "_lemo_forward", False)
    ):
        # A later patch wrapped lemo's forward (TRL's fused LM head, when no LemoCallback re-stacked lemo's on
        # top): it stays, now over what lemo's forward wrapped.
        unhook_lemo_forward(current, applied.previous_model_forward or type(base).forward.__get__(base))
        return model
    if current is not None:
        del base.forward
    if applied.previous_model_forward is not None:
        base.forward = applied.previous_model_forward
    return model


def unhook_lemo_forward(wrapper: Any, replacement: Any) -> bool:
    """Make a later patch call `replacement` where it captured a lemo forward as the forward it wraps.

    TRL's `add_fused_lm_head` keeps the forward it wraps in its closure (`original_forward`); a wrapper that keeps
    it elsewhere is not found. Returns whether a lemo forward was found (and replaced).
    """
    func = getattr(wrapper, "__func__", wrapper)  # TRL installs a bound method
    found = False
    for cell in getattr(func, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # a cell not yet assigned
            continue
        if getattr(value, "_lemo_forward", False):
            cell.cell_contents = replacement
            found = True
    return found


def is_applied(model: nn.Module) -> bool:
    return _ATTR in causal_lm(model).__dict__


def sparsity_state(model: nn.Module) -> SparsityState:
    applied: _Applied | None = causal_lm(model).__dict__.get(_ATTR)
    if applied is None:
        raise RuntimeError("lemo is not applied to this model; call lemo.apply(model, cfg) first.")
    return applied.state


def set_step(model: nn.Module, step: int, steps: int) -> None:
    """Tell lemo that optimizer step `step` (0-based) of `steps` runs next, so the last `dense_tail` steps keep every
    block (SparsityConfig.dense_tail). lemo's training loop and `LemoCallback` call it; a loop of your own should."""
    state = sparsity_state(model)
    state.dense_step = state.config.dense_step(step, steps)


def stats(model: nn.Module) -> dict[int, dict[str, Any]]:
    """Per sparse layer, what the last training forward kept: {layer: {"kept_fraction", "blocks"}}.

    `blocks` lists the kept block ids of each segment (one list per document/row). Layers that have not run
    sparsely yet are absent.
    """
    state = sparsity_state(model)
    return {
        layer: {"kept_fraction": sel.kept_fraction, "blocks": sel.blocks}
        for layer, sel in sorted(state.last.items())
    }


def mean_kept_fraction(model: nn.Module) -> float:
    """Kept-token fraction averaged over all decoder layers of the last forward (dense layers count as 1)."""
    state = sparsity_state(model)
    base = causal_lm(model)
    n = base.config.num_hidden_layers
    kept = [state.last[i].kept_fraction for i in state.last]
    return (sum(kept) + (n - len(kept))) / n if n else 1.0
