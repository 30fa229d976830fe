"""What lemo relies on in an HF decoder layer, checked before patching, so a transformers release that changes it
is refused with a clear message instead of failing deep inside a training step.

The sparse forward replaces a decoder layer's `forward` on the instance. It relies on:
- the call: the decoder stack calls each layer as `layer(hidden_states, attention_mask=..., position_ids=...,
  position_embeddings=(cos, sin), ...)`, with RoPE tables computed once for all layers;
- the return: one tensor, the residual stream leaving the layer (transformers 4.x returned a tuple);
- the modules named by the architecture's `ArchSpec`: norms, attention projections (with the shapes the config
  implies), the MLP.
"""

from __future__ import annotations

import inspect
import typing
from importlib import metadata

from torch import nn

from lemo.integrations.transformers.archs import ArchSpec

TESTED = "5.17 to 5.24"
"""The transformers versions lemo's tests ran on (5.17 on the GPU machine, 5.24 locally)."""
NEEDED_ARGUMENTS = ("hidden_states", "attention_mask", "position_ids", "position_embeddings")


class UnsupportedTransformers(RuntimeError):
    """The installed transformers lays out a decoder layer differently from what lemo patches."""


def _fail(layer: nn.Module, what: str) -> UnsupportedTransformers:
    try:
        version = metadata.version("transformers")
    except metadata.PackageNotFoundError:  # pragma: no cover - transformers is a dependency
        version = "?"
    return UnsupportedTransformers(
        f"lemo cannot patch {type(layer).__name__} from transformers {version}: {what}. lemo is tested with "
        f"transformers {TESTED}; install one of those (pip install 'transformers>=5.17,<5.25') or open an issue "
        "with this message."
    )


def _out_features(module: nn.Module) -> int | None:
    base = getattr(module, "base_layer", module)  # PEFT wraps the Linear and keeps it as base_layer
    return getattr(base, "out_features", None)


def check_layer(layer: nn.Module, spec: ArchSpec, config) -> None:
    """Raise `UnsupportedTransformers` when `layer` lacks what the sparse forward reads or calls."""
    forward = type(layer).forward
    params = inspect.signature(forward).parameters
    names = list(params)
    if len(names) < 2 or names[1] != "hidden_states":
        raise _fail(layer, f"its forward takes {names[1:3]} first, not hidden_states")
    missing = [a for a in NEEDED_ARGUMENTS if a not in params]
    if missing:
        raise _fail(
            layer,
            f"its forward has no {', '.join(missing)} argument (RoPE tables must come from the decoder)",
        )
    try:
        returns = typing.get_type_hints(forward).get("return")
    except Exception:  # an annotation that does not resolve says nothing about the return; the call path does
        returns = None
    if returns is not None and typing.get_origin(returns) is tuple:
        raise _fail(layer, "its forward returns a tuple; the sparse forward returns one tensor")
    for name in (spec.attn, spec.input_norm, spec.post_norm, spec.mlp):
        if not isinstance(getattr(layer, name, None), nn.Module):
            raise _fail(layer, f"it has no module {name!r}")
    attn = getattr(layer, spec.attn)
    for name in filter(None, (spec.q_proj, spec.k_proj, spec.v_proj, spec.o_proj, spec.q_norm, spec.k_norm)):
        if not isinstance(getattr(attn, name, None), nn.Module):
            raise _fail(layer, f"its attention has no module {name!r}")
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(attn, "head_dim", None) or config.hidden_size // heads
    for name, width in ((spec.q_proj, heads * head_dim), (spec.k_proj, kv_heads * head_dim)):
        got = _out_features(getattr(attn, name))
        if got is not None and got != width:
            raise _fail(layer, f"{spec.attn}.{name} has {got} outputs, the config implies {width}")
