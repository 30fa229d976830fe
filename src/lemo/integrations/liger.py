"""Liger-Kernel (linkedin/Liger-Kernel) as a part of lemo: patch one model with Liger's fused kernels, undo it,
and give lemo's own layer paths Liger's RoPE.

What is fused, and how lemo meets each kernel on a Liger-patched model:
- RMSNorm and SwiGLU: Liger rebinds `forward` on each norm and MLP module instance. lemo's layer paths call
  those modules (`layer_parts` reads them every forward), so the dense, kept-row and tiled paths all run
  Liger's kernels, and lemo's MLP tiling tiles Liger's forward.
- RoPE: Liger replaces the modeling module's `apply_rotary_pos_emb`, which HF's attention calls. lemo's
  kept-row attention rotates q and k itself, so `fused_rope` hands it the function HF's attention of that
  module calls: Liger's when patched, and the rotation then matches HF's dense layers kernel for kernel.
- Fused linear cross-entropy: Liger rebinds the CausalLM's forward. lemo's segmented loss replaces that
  forward with lemo's own (`lemo.apply`; `lemo.remove` puts Liger's back): label priority needs the labels
  before the decoder runs, and the loss covers only the positions the sparse layers kept, which Liger's loss,
  over every position, cannot express. With lemo's loss off (`segmented_loss=False`), Liger's loss runs.
Without Liger nothing of this is fused: lemo's RoPE is the reference `lemo.ops.apply_rope` and the norms and
MLP are the model's own modules.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lemo.integrations.transformers.patch import causal_lm, is_applied

__all__ = [
    "LIGER_INSTALL",
    "LigerMissing",
    "apply_liger",
    "fused_rope",
    "is_liger_applied",
    "liger_runs_here",
    "remove_liger",
    "require_liger",
]

LIGER_INSTALL = "pip install 'lemo[liger]'"
# Model types lemo supports (archs.SPECS) that Liger patches with RMSNorm, SwiGLU, RoPE and its fused loss.
SUPPORTED = ("llama", "mistral", "qwen2", "qwen3")
_ATTR = "_lemo_liger"
_UNSET = object()


@dataclass
class _Patched:
    """What Liger changed, so `remove_liger` can put exactly that back: (owner, name, before, after) each."""

    globals: list[tuple[Any, str, Any, Any]] = field(default_factory=list)  # modeling-module attributes
    instance: list[tuple[nn.Module, str, Any, Any]] = field(default_factory=list)  # module __dict__ entries


class LigerMissing(ImportError, RuntimeError):
    """Liger-Kernel is not installed. Also a RuntimeError, so lemo's commands print it as a one-line error."""


def liger_runs_here(model_type: str, device: Any, attention: str = "default") -> bool:
    """Whether `lemo finetune` uses Liger when --liger is not given: on a CUDA device, with liger-kernel installed,
    for a model type Liger patches here and the model's own attention. That is where it measured best: lemo's
    default on Liger took 0.71x Liger exact's step at 32K, on HF's kernels 0.82x (`e2e_llama3_8b_liger.csv`).
    Liger's kernels need a GPU (on a CPU only Triton's interpreter runs them, far too slowly to train)."""
    import importlib.util

    cuda = getattr(device, "type", str(device).split(":")[0]) == "cuda"
    installed = importlib.util.find_spec("liger_kernel") is not None
    return cuda and installed and model_type in SUPPORTED and attention == "default"


def require_liger() -> Any:
    """`liger_kernel.transformers`, or `LigerMissing` (an ImportError) naming the extra to install."""
    try:
        import liger_kernel.transformers as liger
    except ImportError as err:
        raise LigerMissing(
            f"Liger-Kernel is not installed; install lemo's extra: {LIGER_INSTALL} (liger-kernel>=0.8)."
        ) from err
    return liger


def is_liger_applied(model: nn.Module) -> bool:
    """Whether `apply_liger` patched `model` (a plain or PEFT-wrapped causal LM)."""
    return _ATTR in causal_lm(model).__dict__


def _modeling_modules() -> dict[str, Any]:
    # Liger patches names in transformers' modeling modules (classes, apply_rotary_pos_emb): every loaded one.
    return {
        name: mod
        for name, mod in list(sys.modules.items())
        if name.startswith("transformers.models.") and ".modeling_" in name and mod is not None
    }


def _diff_globals(before: dict[str, dict[str, Any]], patched: _Patched) -> None:
    for name, mod in _modeling_modules().items():
        old = before.get(name, {})
        for key, value in vars(mod).items():
            if old.get(key, _UNSET) is not value and name in before:
                patched.globals.append((mod, key, old.get(key, _UNSET), value))


def _diff_instances(modules: list[nn.Module], before: list[dict[str, Any]], patched: _Patched) -> None:
    for module, old in zip(modules, before):
        for key, value in module.__dict__.items():
            if old.get(key, _UNSET) is not value:
                patched.instance.append((module, key, old.get(key, _UNSET), value))


def apply_liger(model: nn.Module, fused_linear_cross_entropy: bool = True) -> nn.Module:
    """Patch `model` (plain or PEFT-wrapped) in place with Liger's RoPE, RMSNorm, SwiGLU and, by default, its
    fused linear cross-entropy: what `apply_liger_kernel_to_llama(model=...)` (and its Mistral/Qwen2/Qwen3
    equivalents) does, also what HF's Trainer and TRL do with `use_liger_kernel=True`. Undone by `remove_liger`.

    Apply it before `lemo.apply` and remove it after `lemo.remove`. Liger's RoPE replaces the modeling module's
    function, so every model of that architecture in the process uses it until `remove_liger`.
    """
    liger = require_liger()
    base = causal_lm(model)
    if is_liger_applied(model):
        return model
    if is_applied(model):
        raise RuntimeError(
            "apply Liger before lemo: call lemo.remove(model), apply_liger(model), then lemo.apply."
        )
    model_type = base.config.model_type
    if model_type not in SUPPORTED:
        raise ValueError(
            f"lemo's Liger integration covers model types {', '.join(SUPPORTED)}, not {model_type!r}; "
            "run without --liger (or Liger's own apply_liger_kernel_to_* outside lemo)."
        )
    modules = list(base.modules())
    instance_before = [dict(m.__dict__) for m in modules]
    globals_before = {name: dict(vars(mod)) for name, mod in _modeling_modules().items()}
    liger._apply_liger_kernel_to_instance(
        model=base,
        rope=True,
        rms_norm=True,
        swiglu=True,
        cross_entropy=False,
        fused_linear_cross_entropy=fused_linear_cross_entropy,
    )
    patched = _Patched()
    _diff_globals(globals_before, patched)
    _diff_instances(modules, instance_before, patched)
    base.__dict__[_ATTR] = patched
    return model


def remove_liger(model: nn.Module) -> nn.Module:
    """Undo `apply_liger`: every attribute Liger set goes back, unless something else replaced it since."""
    base = causal_lm(model)
    if is_applied(model):
        raise RuntimeError("remove lemo before Liger: call lemo.remove(model), then remove_liger(model).")
    patched: _Patched | None = base.__dict__.pop(_ATTR, None)
    if patched is None:
        return model
    for module, key, before, after in reversed(patched.instance):
        if module.__dict__.get(key, _UNSET) is after:
            if before is _UNSET:
                del module.__dict__[key]
            else:
                module.__dict__[key] = before
    for mod, key, before, after in reversed(patched.globals):
        if vars(mod).get(key, _UNSET) is after:
            if before is _UNSET:
                delattr(mod, key)
            else:
                setattr(mod, key, before)
    return model


RowsRope = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]
]


def fused_rope(attn: nn.Module) -> RowsRope | None:
    """RoPE for lemo's row layout, fused: the `apply_rotary_pos_emb` that HF's attention `attn` calls when it is
    Liger's (so lemo's rotation matches HF's dense layers), else None (lemo's reference RoPE runs)."""
    fn = getattr(sys.modules.get(type(attn).__module__), "apply_rotary_pos_emb", None)
    if fn is None or not getattr(fn, "__module__", "").startswith("liger_kernel"):
        return None
    return functools.partial(_rows_rope, fn)


def _rows_rope(
    fn: Callable, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """q [N, H, D] and k [N, H_kv, D] rotated by per-row cos/sin [N, D], through HF's signature.

    HF's layout is q [B, H, T, D] with cos [B, T, D]: rows become one sequence of N positions. Liger's kernel
    works on [B, T, H, D], which these transposed views already are, so nothing is copied either way.
    """
    q4 = q.unsqueeze(0).transpose(1, 2)  # [1, H, N, D] view
    k4 = k.unsqueeze(0).transpose(1, 2)  # [1, H_kv, N, D] view
    q_out, k_out = fn(q4, k4, cos.unsqueeze(0), sin.unsqueeze(0))  # [1, H, N, D], [1, H_kv, N, D]
    return q_out.transpose(1, 2)[0], k_out.transpose(1, 2)[0]  # [N, H, D], [N, H_kv, D]
