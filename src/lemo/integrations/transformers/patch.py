"""Reversible, instance-level patching of an HF causal LM: `apply`, `remove`, `stats`.

Nothing is patched on classes or in source: each sparse decoder layer gets an instance `forward`, the decoder
stack a pre-hook (to see the 2D attention mask and start a new step), and the CausalLM an instance `forward`
for the segmented loss. `remove` deletes exactly those, so the model is bit-identical to before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from lemo.config import SparsityConfig
from lemo.integrations.transformers.archs import ArchSpec, layer_parts, spec_for
from lemo.integrations.transformers.contract import check_layer
from lemo.integrations.transformers.loss import (
    cache_kwargs,
    drops_eliminated,
    make_label_forward,
    make_loss_forward,
)
from lemo.memory import HostOffloader, offloaded_checkpoint, tiled_rows
from lemo.sparsity import (
    BlockScorer,
    OracleScorer,
    SparsityState,
    backward_layer_forward,
    sparse_layer_forward,
    trimmed_layer_forward,
    trimmed_rows,
)

log = logging.getLogger(__name__)
_ATTR = "_lemo_applied"
_GC_SUSPENDED = "_lemo_gc_suspended"


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


def _layer_forward(
    layer: nn.Module,
    spec: ArchSpec,
    index: int,
    config,
    state: SparsityState,
    scorer: BlockScorer,
    dense: bool = False,
):
    dense_forward = type(layer).forward.__get__(layer)

    def forward(
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool | None = False,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        active = layer.training or (state.config.sparse_in_eval and not use_cache)
        if not active or position_embeddings is None:
            return dense_forward(
                hidden_states,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=use_cache,
                position_embeddings=position_embeddings,
                **cache_kwargs(past_key_values),
                **kwargs,
            )
        parts = layer_parts(layer, spec, index, config)
        if state.config.elimination == "backward" and not dense:
            params = tuple(p for p in layer.parameters() if p.requires_grad)
            return backward_layer_forward(
                parts, hidden_states, position_embeddings, position_ids, state, scorer, params
            )
        # HF's own checkpoint (suspended for this forward by the decoder hook, see `_install_hooks`) would store the
        # whole layer input; the sparse forward checkpoints itself and stores only the kept rows.
        checkpoint = _checkpointed(layer, state)
        inplace = layer.training and state.config.inplace_residual and not state.keep_layer_inputs
        return sparse_layer_forward(
            parts,
            hidden_states,
            position_embeddings,
            position_ids,
            state,
            scorer,
            layer.training,
            checkpoint=checkpoint,
            inplace=inplace,
            offloader=state.offloader,
            dense=dense,
        )

    return forward


def _checkpointed(layer: nn.Module, state: SparsityState) -> bool:
    """Whether lemo's forward of `layer` checkpoints itself: HF's checkpointing is on (or suspended by the decoder
    hook for this forward, see `_install_hooks`), or offload stores every layer input in host memory."""
    return layer.training and (
        state.offloader is not None
        or bool(getattr(layer, "gradient_checkpointing", False) or layer.__dict__.get(_GC_SUSPENDED, False))
    )


def _without_hf_checkpoint(layer: nn.Module, run, h: torch.Tensor) -> torch.Tensor:
    """`run(h)` with HF's checkpointing flag off: from transformers 5.2x HF checkpoints inside the class's forward
    and reads the flag when called, and a recompute in backward runs after the decoder hook restored it."""
    flag = getattr(layer, "gradient_checkpointing", False)
    layer.gradient_checkpointing = False
    try:
        return run(h)
    finally:
        layer.gradient_checkpointing = flag


def _trimmed_forward(
    layer: nn.Module, spec: ArchSpec, index: int, config, state: SparsityState, fallback, hf_fallback: bool
):
    """The last decoder layer: trimmed to the rows the loss reads while lemo's segmented loss scores a training
    forward (`state.loss_rows`), else `fallback`, the forward it had: HF's (`hf_fallback`), or lemo's with offload
    or tiling, which checkpoints itself."""

    def forward(
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool | None = False,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        sel = _loss_selection(hidden_states, position_ids) if layer.training else None
        parts = layer_parts(layer, spec, index, config) if sel is not None else None
        # The trimmed attention has no dropout: a model that trains with it runs the full layer.
        if parts is None or position_embeddings is None or parts.attn.dropout > 0:
            run = partial(
                fallback,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=use_cache,
                position_embeddings=position_embeddings,
                **cache_kwargs(past_key_values),
                **kwargs,
            )
            # The decoder hook suspended HF's checkpointing for a forward that was to trim: checkpoint the layer as
            # HF does (its checkpoint function, the hidden states positional), so the numbers are HF's own.
            if hf_fallback and layer.__dict__.get(_GC_SUSPENDED, False) and torch.is_grad_enabled():
                return layer._gradient_checkpointing_func(
                    partial(_without_hf_checkpoint, layer, run), hidden_states
                )
            return run(hidden_states)
        return trimmed_layer_forward(
            parts,
            hidden_states,
            position_embeddings,
            position_ids,
            state,
            sel,
            checkpoint=_checkpointed(layer, state),
            offloader=state.offloader,
        )

    def _loss_selection(hidden: torch.Tensor, position_ids: torch.Tensor | None):
        """The rows lemo's loss scores this forward, or None: no loss rows recorded, or too many to trim."""
        if state.loss_rows is None:
            return None
        B, T, _ = hidden.shape
        rows = state.loss_rows.to(hidden.device)  # [B, T]
        last = state.last_selection()
        if drops_eliminated(state.config) and last is not None:
            kept = torch.zeros(B * T, dtype=torch.bool, device=rows.device)  # [B*T]
            kept[last.rows] = True
            rows = rows & kept.view(B, T)  # the loss scores only what the last sparse layer kept
        return trimmed_rows(state, B, T, position_ids, rows)

    return forward


def _offloaded_dense_forward(layer: nn.Module, state: SparsityState):
    """A dense layer checkpointed by lemo with its input in host memory: `exact+offload` is lemo with every
    layer dense, so dense and sparse layers share one offload path."""
    dense_forward = type(layer).forward.__get__(layer)

    def forward(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        if not (layer.training and torch.is_grad_enabled()) or state.offloader is None:
            return dense_forward(hidden_states, *args, **kwargs)
        run = partial(_without_hf_checkpoint, layer, lambda h: dense_forward(h, *args, **kwargs))
        return offloaded_checkpoint(run, state.offloader, hidden_states)

    return forward


def _tiled_mlp_forward(mlp: nn.Module, tile: int):
    # An instance forward is a fused kernel bound to this module (Liger's SwiGLU): tile that, not the class's.
    mlp_forward = mlp.__dict__.get("forward") or type(mlp).forward.__get__(mlp)

    def forward(x: torch.Tensor) -> torch.Tensor:
        return tiled_rows(mlp_forward, x, tile)  # [..., d] in and out; rows are independent

    return forward


def _patch_layers(
    layers: Any, sparse: list[int], spec: ArchSpec, model_config: Any, config: SparsityConfig, state, scorer
) -> tuple[list[nn.Module], list[Any], list[tuple[nn.Module, Any]]]:
    """Install lemo's instance forwards: (patched layers, their previous forwards, (tiled mlp, previous forward))."""
    n = len(layers)
    patched, previous = [], []
    for i in sparse:
        layer = layers[i]
        previous.append(layer.__dict__.get("forward"))
        layer.forward = _layer_forward(layer, spec, i, model_config, state, scorer)
        patched.append(layer)
    if state.offloader is not None or config.tile_attention:
        for i in sorted(set(range(n)) - set(sparse)):
            layer = layers[i]
            previous.append(layer.__dict__.get("forward"))
            if config.tile_attention:  # lemo's layer forward with every row kept tiles the attention sublayer
                layer.forward = _layer_forward(layer, spec, i, model_config, state, scorer, dense=True)
            else:
                layer.forward = _offloaded_dense_forward(layer, state)
            patched.append(layer)
    tiled = []
    if config.tile_tokens > 0:
        for layer in layers:
            mlp = getattr(layer, spec.mlp)
            tiled.append((mlp, mlp.__dict__.get("forward")))
            mlp.forward = _tiled_mlp_forward(mlp, config.tile_tokens)
    return patched, previous, tiled


def _patch_trim(
    layers: Any,
    sparse: list[int],
    spec: ArchSpec,
    model_config: Any,
    config: SparsityConfig,
    state,
    patched,
    previous,
) -> nn.Module | None:
    """Give the last layer its trimmed forward (`trim_last_layer`, unless that layer is sparse); it wraps the
    forward the layer has now. Returns the layer, or None."""
    last = len(layers) - 1
    if not config.trim_last_layer or last in sparse or last < 0:
        return None
    layer = layers[last]
    fallback = layer.__dict__.get("forward") or type(layer).forward.__get__(layer)
    hf_fallback = not any(p is layer for p in patched)
    if hf_fallback:
        previous.append(layer.__dict__.get("forward"))
        patched.append(layer)
    layer.forward = _trimmed_forward(layer, spec, last, model_config, state, fallback, hf_fallback)
    return layer


def _install_hooks(
    decoder: nn.Module,
    base: nn.Module,
    state: SparsityState,
    patched: list[nn.Module],
    trimmed: nn.Module | None = None,
) -> tuple[Any, Any]:
    """The decoder's pre-hook (starts a step) and post-hook (ends it): their handles. `patched` checkpoint
    themselves in every training forward; `trimmed` (the last layer, when it has only the trimmed forward) only
    in forwards that trim it, the others are HF's."""

    def begin_step(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
        state.begin_forward(mask)
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
                layer.__dict__[_GC_SUSPENDED] = True

    def end_step(_module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        # One forward's labels and evidence; a recompute reuses the cached selection.
        state.label_mask = state.query_mask = state.evidence_mask = state.loss_rows = None
        for layer in [*patched, *([trimmed] if trimmed is not None else [])]:
            if layer.__dict__.pop(_GC_SUSPENDED, False):
                layer.gradient_checkpointing = True

    hook = decoder.register_forward_pre_hook(begin_step, with_kwargs=True)
    # always_call: the flags come back even when the forward raises (out of memory in a length search).
    end_hook = decoder.register_forward_hook(end_step, with_kwargs=True, always_call=True)
    return hook, end_hook


def _log_applied(
    config: SparsityConfig, state: SparsityState, sparse: list[int], n: int, tiled: list
) -> None:
    log.info("lemo: token elimination on %d of %d layers (%s)", len(sparse), n, config.selection)
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
    patched, previous, tiled = _patch_layers(layers, sparse, spec, base.config, config, state, scorer)
    always = list(patched)  # lemo's forward checkpoints these in every training forward
    trimmed = _patch_trim(layers, sparse, spec, base.config, config, state, patched, previous)
    hook, end_hook = _install_hooks(
        decoder, base, state, always, trimmed if not any(p is trimmed for p in always) else None
    )
    previous_model_forward = base.__dict__.get("forward")
    if config.loss_tokens == "kept" and not config.segmented_loss:
        raise ValueError("loss_tokens='kept' works through the segmented loss; set segmented_loss=True.")
    if config.segmented_loss:
        base.forward = make_loss_forward(base, decoder, config, state)
    elif config.label_priority:
        base.forward = make_label_forward(base, state)
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
