"""One declarative spec per supported architecture: where the parts of a decoder layer live.

Adding an architecture means adding a spec here and a row to the tests' model matrix, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lemo.sparsity.parts import AttentionParts, LayerParts


@dataclass(frozen=True)
class ArchSpec:
    model_types: tuple[str, ...]
    decoder: str = "model"  # attribute of the CausalLM holding the decoder stack
    layers: str = "layers"  # attribute of the decoder stack holding the layers
    attn: str = "self_attn"
    q_proj: str = "q_proj"
    k_proj: str = "k_proj"
    v_proj: str = "v_proj"
    o_proj: str = "o_proj"
    q_norm: str | None = None
    k_norm: str | None = None
    input_norm: str = "input_layernorm"
    post_norm: str = "post_attention_layernorm"
    mlp: str = "mlp"
    gate_proj: str = "gate_proj"
    up_proj: str = "up_proj"
    down_proj: str = "down_proj"


LLAMA = ArchSpec(model_types=("llama",))
MISTRAL = ArchSpec(model_types=("mistral",))
QWEN2 = ArchSpec(model_types=("qwen2",))
QWEN3 = ArchSpec(model_types=("qwen3",), q_norm="q_norm", k_norm="k_norm")
SPECS: dict[str, ArchSpec] = {t: s for s in (LLAMA, MISTRAL, QWEN2, QWEN3) for t in s.model_types}


def spec_for(model_type: str) -> ArchSpec:
    if model_type not in SPECS:
        raise ValueError(
            f"model type {model_type!r} is not supported by lemo yet; supported: {', '.join(sorted(SPECS))}. "
            "Open an issue or add an ArchSpec in lemo/integrations/transformers/archs.py."
        )
    return SPECS[model_type]


def _plain_weight(module: nn.Module) -> torch.Tensor | None:
    """The weight of a plain Linear; None when adapters wrap it (PEFT layers keep a `base_layer`)."""
    if type(module) is nn.Linear and module.bias is None:
        return module.weight
    return None


def layer_parts(layer: nn.Module, spec: ArchSpec, index: int, config) -> LayerParts:
    """Read the parts of an HF decoder layer (done each forward, so later-injected adapters are seen)."""
    # Imported here: liger.py imports patch.py, which imports this module.
    from lemo.integrations.liger import fused_rope

    attn = getattr(layer, spec.attn)
    heads = config.num_attention_heads
    head_dim = getattr(attn, "head_dim", None) or config.hidden_size // heads
    window = getattr(attn, "sliding_window", None)
    if window is None and "mistral" in spec.model_types:
        window = getattr(config, "sliding_window", None)
    parts_attn = AttentionParts(
        q_proj=getattr(attn, spec.q_proj),
        k_proj=getattr(attn, spec.k_proj),
        v_proj=getattr(attn, spec.v_proj),
        o_proj=getattr(attn, spec.o_proj),
        num_heads=heads,
        num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        scaling=getattr(attn, "scaling", head_dim**-0.5),
        q_norm=getattr(attn, spec.q_norm) if spec.q_norm else None,
        k_norm=getattr(attn, spec.k_norm) if spec.k_norm else None,
        sliding_window=window,
        dropout=float(getattr(attn, "attention_dropout", 0.0) or 0.0),
        rope=fused_rope(attn),  # the RoPE HF's attention calls, when it is Liger's
    )
    mlp = getattr(layer, spec.mlp)
    weights = [
        _plain_weight(getattr(mlp, n, None) or nn.Identity())
        for n in (spec.gate_proj, spec.up_proj, spec.down_proj)
    ]
    return LayerParts(
        index=index,
        input_norm=getattr(layer, spec.input_norm),
        post_norm=getattr(layer, spec.post_norm),
        mlp=mlp,
        attn=parts_attn,
        mlp_weights=tuple(weights) if all(w is not None for w in weights) else None,
    )
