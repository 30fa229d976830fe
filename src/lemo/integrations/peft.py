"""LoRA through PEFT, plus LongLoRA's "LoRA+" option of also training norms and embeddings."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

NORM_KEYS = ("norm",)
EMBED_KEYS = ("embed_tokens",)


@contextmanager
def quiet_peft() -> Iterator[None]:
    """PEFT's `PeftModel.__init__` reads `model.is_gradient_checkpointing`, which transformers >= 5.2x deprecated
    (for `is_activation_checkpointing`) with a FutureWarning on every read: one per run, about code neither lemo
    nor its user wrote. Only that message is silenced, and only around PEFT's wrapping."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield


def add_lora(
    model: nn.Module,
    rank: int,
    alpha: float,
    dropout: float,
    targets: list[str],
    train_norms: bool = False,
    train_embeddings: bool = False,
) -> nn.Module:
    """Wrap `model` with LoRA adapters on `targets`; optionally unfreeze norms and input embeddings too."""
    from peft import LoraConfig, get_peft_model

    if rank < 1:
        raise ValueError(f"--lora-rank {rank} must be at least 1.")
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        raise ValueError(
            f"--lora-targets {missing} name no module of this model; e.g. q_proj,k_proj,v_proj,o_proj."
        )
    cfg = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), task_type="CAUSAL_LM"
    )
    with quiet_peft():
        peft_model = get_peft_model(model, cfg)
    for name, p in peft_model.named_parameters():
        leaf = name.rsplit(".", 2)[-2] if "." in name else name
        if (train_norms and any(k in leaf for k in NORM_KEYS)) or (
            train_embeddings and any(k in name for k in EMBED_KEYS)
        ):
            p.requires_grad_(True)
    return peft_model


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every trainable tensor by name (LoRA weights and any unfrozen norms/embeddings)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [n for n in state if n not in params]
    if missing:
        raise ValueError(
            f"checkpoint holds tensors this model lacks ({missing[:3]}...); was it made with other LoRA settings?"
        )
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t)


def save_adapter(model: nn.Module, out_dir: str | Path) -> Path:
    """PEFT adapter files, plus `extra_trainable.safetensors` for unfrozen norms/embeddings if any."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    model.save_pretrained(out)
    extra = {n: t.cpu().contiguous() for n, t in trainable_state(model).items() if "lora_" not in n}
    if extra:
        save_file(extra, str(out / "extra_trainable.safetensors"))
    return out


def load_adapter(model: nn.Module, adapter_dir: str | Path) -> nn.Module:
    """A base model with a saved lemo/PEFT adapter (and extra trainable tensors) on top."""
    from peft import PeftModel
    from safetensors.torch import load_file

    path = Path(adapter_dir)
    if not (path / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"{path} holds no adapter (adapter_config.json); pass the adapter/ folder of a run."
        )
    with quiet_peft():
        peft_model = PeftModel.from_pretrained(model, path)
    extra = path / "extra_trainable.safetensors"
    if extra.is_file():
        params = dict(peft_model.named_parameters())
        with torch.no_grad():
            for n, t in load_file(str(extra)).items():
                params[n].copy_(t)
    return peft_model
