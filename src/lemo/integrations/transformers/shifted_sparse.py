"""LongLoRA's shifted sparse attention (S²-Attn), the `longlora` baseline, as a reversible switch on an HF model.

In training, the sequence is cut into groups of G = T * group_fraction tokens that attend causally only within
themselves; the second half of the heads first rolls the tokens by -G/2 (so their groups straddle the others'
boundaries and information flows between groups) and rolls the output back. As in the public LongLoRA code, the
roll wraps around: the last shifted group holds the last G/2 tokens followed by the first G/2. In eval mode the
model runs plain SDPA (LongLoRA evaluates with full attention), whatever the implementation was before.

The switch registers an attention function with transformers' `AttentionInterface` and points the model's
`config._attn_implementation` at it; the mask function registered beside it is SDPA's, so masks arrive exactly as
SDPA would get them (None for plain causal rows) and eval mode is SDPA bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lemo.integrations.transformers.patch import causal_lm

NAME = "lemo_s2"
_STATE = "_lemo_s2_state"  # on the base model: [(config, previous implementation)], modules with the fraction
_FRACTION = "_lemo_s2_group_fraction"  # on each module holding a switched config (the attention modules)
_TORCH_GQA = tuple(int(p) for p in torch.__version__.split(".")[:2]) >= (2, 5)  # SDPA's enable_gqa


def shifted_sparse_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    num_groups: int,
    *,
    shift: bool = True,
    scale: float | None = None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """S²-Attn of query [B, H, T, D] on key/value [B, H_kv, T, D]; returns [B, T, H, D] like HF attention.

    Query head h reads kv head h // (H / H_kv). With `shift`, query heads H//2.. and kv heads H_kv//2.. are
    rolled (with an odd H, as in LongLoRA's code, the larger half), which is the same split when H_kv is even; an
    odd H_kv (e.g. 1, or 3 of SmolLM2's 9 heads) has a kv head shared by rolled and unrolled query heads, so k/v
    are repeated to H heads first.
    """
    B, H, T, D = query.shape
    H_kv = key.shape[1]
    if T % num_groups:
        raise ValueError(
            f"sequence length {T} is not a multiple of {num_groups} (shifted sparse attention cuts it into "
            f"{num_groups} groups); use a seq_len that is."
        )
    G = T // num_groups
    if shift and G % 2:
        raise ValueError(
            f"group size {G} is odd and cannot be shifted by half a group; "
            f"use a seq_len that is a multiple of {2 * num_groups}."
        )
    # An odd H_kv has a kv head shared by rolled and unrolled query heads; torch < 2.5 has no enable_gqa.
    if H_kv != H and ((shift and H_kv % 2) or not _TORCH_GQA):
        key, value = (x.repeat_interleave(H // H_kv, dim=1) for x in (key, value))  # [B, H, T, D]
    if shift:
        query, key, value = (_roll_half(x, -G // 2) for x in (query, key, value))
    gqa = key.shape[1] != H

    def grouped(x: torch.Tensor) -> torch.Tensor:  # [B, h, T, D] -> [B * n, h, G, D]
        h = x.shape[1]
        return x.reshape(B, h, num_groups, G, D).transpose(1, 2).reshape(B * num_groups, h, G, D)

    extra = {"enable_gqa": True} if gqa else {}
    out = F.scaled_dot_product_attention(
        grouped(query), grouped(key), grouped(value), dropout_p=dropout, is_causal=True, scale=scale, **extra
    )  # [B * n, H, G, D]
    out = out.reshape(B, num_groups, H, G, D).transpose(1, 2).reshape(B, H, T, D)  # [B, H, T, D]
    if shift:
        out = _roll_half(out, G // 2)  # back to the original token order
    return out.transpose(1, 2).contiguous()  # [B, T, H, D]


def _roll_half(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Roll the second half of the heads of x [B, h, T, D] along the sequence by `shift`."""
    h = x.shape[1] // 2
    return torch.cat([x[:, :h], x[:, h:].roll(shift, dims=2)], dim=1)  # [B, h, T, D]


def _is_plain_causal(mask: torch.Tensor, T: int) -> bool:
    """True for a mask that hides nothing beyond causality: an all-ones 2D mask, or a 4D causal one (bool or
    additive), which HF materializes instead of None e.g. under tracing."""
    if mask.dim() == 2:
        return bool(mask.bool().all())
    if mask.shape[-2:] != (T, T):
        return False
    allowed = mask if mask.dtype == torch.bool else mask == 0  # [B|1, H|1, T, T]
    causal = torch.ones(T, T, dtype=torch.bool, device=mask.device).tril()  # [T, T]
    return bool((allowed == causal).all())


def s2_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The `AttentionInterface` function: S² in training, transformers' own SDPA otherwise."""
    from transformers import AttentionInterface

    if not module.training:
        sdpa = AttentionInterface()["sdpa"]
        return sdpa(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs)
    T = query.shape[2]
    if key.shape[2] != T:
        raise ValueError(
            "shifted sparse attention needs as many keys as queries (no KV cache); call model.eval() to generate."
        )
    if attention_mask is not None and not _is_plain_causal(attention_mask, T):
        raise ValueError(
            "shifted sparse attention does not support padding or packed-document masks; train on full rows "
            "of real tokens (--data-mode chunk, no attention_mask zeros)."
        )
    fraction = getattr(module, _FRACTION, None)
    if fraction is None:
        raise RuntimeError(
            f"{type(module).__name__} has no S² group fraction; use enable_shifted_sparse_attention."
        )
    out = shifted_sparse_attention(query, key, value, round(1 / fraction), scale=scaling, dropout=dropout)
    return out, None  # [B, T, H, D]


def _configs(base: nn.Module) -> list[Any]:
    """Every distinct config the model's attention may read: its submodels' configs and their sub-configs."""
    from transformers import PreTrainedModel

    todo = [m.config for m in base.modules() if isinstance(m, PreTrainedModel)]
    found: list[Any] = []
    while todo:
        config = todo.pop(0)
        if all(config is not c for c in found):
            found.append(config)
            todo += [
                getattr(config, k) for k in getattr(config, "sub_configs", {}) if getattr(config, k, None)
            ]
    return found


def enable_shifted_sparse_attention(model: nn.Module, group_fraction: float = 0.25) -> nn.Module:
    """Train `model` (an HF causal LM, plain or PEFT-wrapped) with S²-Attn of groups of T * group_fraction tokens.

    In place and reversible (`disable_shifted_sparse_attention`); enabling again only changes the fraction.
    1 / group_fraction must be a whole number of groups. Returns `model` for chaining.
    """
    from transformers import AttentionInterface, AttentionMaskInterface

    groups = round(1 / group_fraction) if group_fraction > 0 else 0
    if not (0 < group_fraction <= 1) or abs(groups * group_fraction - 1) > 1e-9:
        raise ValueError(
            f"group_fraction={group_fraction} must be 1/n for a whole n, such as 0.25 (4 groups)."
        )
    AttentionInterface.register(NAME, s2_attention_forward)
    # SDPA's masks: None for plain causal rows, so training takes the S² path and eval is exactly SDPA.
    AttentionMaskInterface.register(NAME, AttentionMaskInterface()["sdpa"])
    base = causal_lm(model)
    state = base.__dict__.get(_STATE)
    if state is None:
        configs = _configs(base)
        previous = [(c, c._attn_implementation) for c in configs]
        for c in configs:
            c._attn_implementation = NAME
        modules = [m for m in base.modules() if any(getattr(m, "config", None) is c for c in configs)]
        state = base.__dict__[_STATE] = (previous, modules)
    for m in state[1]:
        setattr(m, _FRACTION, group_fraction)
    return model


def disable_shifted_sparse_attention(model: nn.Module) -> nn.Module:
    """Undo `enable_shifted_sparse_attention`: the previous attention implementation, exactly. No-op if off."""
    base = causal_lm(model)
    state = base.__dict__.pop(_STATE, None)
    if state is not None:
        previous, modules = state
        for config, implementation in previous:  # parents first: their setter also resets sub-configs
            config._attn_implementation = implementation
        for m in modules:
            delattr(m, _FRACTION)
    return model
