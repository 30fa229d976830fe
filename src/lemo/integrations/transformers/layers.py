"""lemo's instance forwards of decoder layers, and their installation (`patch_layers`, `patch_trim`).

- sparse layers: token elimination (lemo.sparsity.layer) or backward elimination (lemo.sparsity.backward);
- with offload or `tile_attention`, the dense layers too, so every layer shares one offload and tiling path;
- the last layer, when dense: trimmed to the rows the loss scores (lemo.sparsity.trimmed), else its own forward;
- with `tile_tokens`, every MLP in row tiles.

HF's gradient checkpointing is suspended by the decoder hook (lemo.integrations.transformers.patch) for the
layers whose lemo forward checkpoints itself: `GC_SUSPENDED` marks them for the length of one forward.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from lemo.config import SparsityConfig
from lemo.integrations.transformers.archs import ArchSpec, layer_parts
from lemo.integrations.transformers.loss import cache_kwargs, drops_eliminated
from lemo.memory import offloaded_checkpoint, tiled_rows
from lemo.sparsity import (
    BlockScorer,
    SparsityState,
    backward_layer_forward,
    sparse_layer_forward,
    trimmed_layer_forward,
    trimmed_rows,
)

GC_SUSPENDED = "_lemo_gc_suspended"


def layer_forward(
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
        or bool(getattr(layer, "gradient_checkpointing", False) or layer.__dict__.get(GC_SUSPENDED, False))
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

    def forward(hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        # HF passes everything but the hidden states by keyword; the fallback gets them back as they came.
        position_ids, position_embeddings = kwargs.get("position_ids"), kwargs.get("position_embeddings")
        sel = _loss_selection(hidden_states, position_ids) if layer.training else None
        parts = layer_parts(layer, spec, index, config) if sel is not None else None
        # The trimmed attention has no dropout: a model that trains with it runs the full layer.
        if parts is None or position_embeddings is None or parts.attn.dropout > 0:

            def run(h: torch.Tensor) -> torch.Tensor:
                return fallback(h, *args, **kwargs)

            # The decoder hook suspended HF's checkpointing for a forward that was to trim: checkpoint the layer as
            # HF does (its checkpoint function, the hidden states positional), so the numbers are HF's own.
            if hf_fallback and layer.__dict__.get(GC_SUSPENDED, False) and torch.is_grad_enabled():
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


def patch_layers(
    layers: Any, sparse: list[int], spec: ArchSpec, model_config: Any, config: SparsityConfig, state, scorer
) -> tuple[list[nn.Module], list[Any], list[tuple[nn.Module, Any]]]:
    """Install lemo's instance forwards: (patched layers, their previous forwards, (tiled mlp, previous forward))."""
    n = len(layers)
    patched, previous = [], []
    for i in sparse:
        layer = layers[i]
        previous.append(layer.__dict__.get("forward"))
        layer.forward = layer_forward(layer, spec, i, model_config, state, scorer)
        patched.append(layer)
    if state.offloader is not None or config.tile_attention:
        for i in sorted(set(range(n)) - set(sparse)):
            layer = layers[i]
            previous.append(layer.__dict__.get("forward"))
            if config.tile_attention:  # lemo's layer forward with every row kept tiles the attention sublayer
                layer.forward = layer_forward(layer, spec, i, model_config, state, scorer, dense=True)
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


def patch_trim(
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
