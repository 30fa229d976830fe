"""LoRA adapters that keep their input as the model gives it, instead of PEFT's fp32 copy.

PEFT keeps adapters in fp32 on a bf16 model and casts each adapter's input to fp32 before lora_A
(`_cast_input_dtype`). Autograd then keeps that fp32 copy for lora_A's weight gradient, one per adapter: q, k and v
each keep their own copy of the same normed input. At 32K rows of Llama-3-8B that is four 512 MiB copies alive in
each layer's backward, 2.0 GiB of the step's peak (`profile_llama3_8b_peak.csv`).

The copy holds nothing the bf16 input does not: upcasting is exact. So lemo turns PEFT's cast off for the
adapters it can and runs lora_A as `UpcastLinear`, which keeps the input tensor itself (shared by every adapter
that reads it, and often saved anyway) and upcasts it again in backward. Every output and gradient is the same
arithmetic on the same values as PEFT's path.

Left as PEFT runs them: adapters with dropout (its mask would be drawn on other values), variants (DoRA and the
like), a lora_A with a bias, and calls under autocast (PEFT's own cast and autocast's rules apply there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


class UpcastLinear(torch.autograd.Function):
    """`x.to(w.dtype) @ w.T`, saving `x` as it came: the upcast copy exists only while a product needs it."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return nn.functional.linear(x.to(weight.dtype), weight)  # [..., r] in the adapter's dtype

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            # as autograd forms it for PEFT's path: the linear's input gradient, then the cast's (back to x's dtype)
            grad_x = grad.matmul(weight).to(x.dtype)  # [..., d_in]
        if ctx.needs_input_grad[1]:
            x_up = x.to(weight.dtype).reshape(-1, x.shape[-1])  # [rows, d_in], rebuilt here instead of kept
            grad_w = grad.reshape(-1, grad.shape[-1]).t().mm(x_up)  # [r, d_in]
        return grad_x, grad_w


def _upcast_forward(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if x.dtype == module.weight.dtype or torch.is_autocast_enabled(x.device.type):
        # Nothing to save (same dtype), or autocast decides the matmul's dtype: PEFT's own path.
        return nn.functional.linear(x.to(module.weight.dtype), module.weight)
    return UpcastLinear.apply(x, module.weight)


@dataclass
class _Installed:
    layer: nn.Module  # a PEFT LoRA Linear
    adapters: list[nn.Module]  # the lora_A modules given `_upcast_forward`
    had_flag: bool  # whether `cast_input_dtype_enabled` was set on the layer before
    flag: bool  # its value then


def _eligible_adapters(layer: nn.Module) -> list[nn.Module] | None:
    """The lora_A modules of `layer` that `UpcastLinear` can run, or None where any active adapter cannot (PEFT's
    cast is one switch for the whole layer)."""
    base = getattr(layer, "base_layer", None)
    if base is None or not isinstance(getattr(base, "weight", None), torch.Tensor):
        return None
    out = []
    for name in layer.active_adapters:
        if name not in layer.lora_A:
            continue
        lora_a = layer.lora_A[name]
        variant = getattr(layer, "lora_variant", {})
        if (
            name in variant
            or type(lora_a) is not nn.Linear
            or lora_a.bias is not None
            or not isinstance(layer.lora_dropout[name], nn.Identity)
            or lora_a.weight.dtype == base.weight.dtype
        ):
            return None
        out.append(lora_a)
    return out or None


def keep_lora_inputs(model: nn.Module) -> list[_Installed]:
    """Run every eligible PEFT LoRA Linear of `model` on its input as given (module docstring). Returns what
    `restore_lora_inputs` needs to undo it; an empty list where there is no PEFT LoRA layer."""
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:  # no PEFT: no adapters to change
        return []
    installed = []
    for module in model.modules():
        if not isinstance(module, LoraLinear):
            continue
        adapters = _eligible_adapters(module)
        if adapters is None:
            continue
        had = "cast_input_dtype_enabled" in module.__dict__
        installed.append(
            _Installed(module, adapters, had, module.__dict__.get("cast_input_dtype_enabled", True))
        )
        module.cast_input_dtype_enabled = (
            False  # PEFT's own switch (peft.helpers.disable_input_dtype_casting)
        )
        for lora_a in adapters:
            lora_a.forward = _upcast_forward.__get__(lora_a)
    return installed


def restore_lora_inputs(installed: list[_Installed]) -> None:
    """Undo `keep_lora_inputs`: PEFT's cast and lora_A's own forward again."""
    for item in installed:
        for lora_a in item.adapters:
            lora_a.__dict__.pop("forward", None)
        if item.had_flag:
            item.layer.cast_input_dtype_enabled = item.flag
        else:
            item.layer.__dict__.pop("cast_input_dtype_enabled", None)
