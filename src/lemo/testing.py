"""Helpers for tests (shipped so downstream users can run the same contract checks): tiny random models."""

from __future__ import annotations

import torch
from torch import nn

ARCHS = ("llama", "mistral", "qwen2", "qwen3")


def tiny_model(
    arch: str = "llama",
    *,
    layers: int = 4,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    vocab: int = 256,
    intermediate: int | None = None,
    head_dim: int | None = None,
    max_positions: int = 8192,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    **config,
) -> nn.Module:
    """A random-init causal LM of the given architecture, small enough for CPU tests.

    `intermediate` defaults to ``2 * hidden`` and `head_dim` to ``hidden // heads``; further keyword arguments
    (``rope_parameters``, ``tie_word_embeddings``, ``use_cache``, ...) go to the HF config as they are.
    """
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    common = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate or 2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        attn_implementation="sdpa",
    )
    if head_dim is not None:
        common["head_dim"] = head_dim
    common.update(config)
    torch.manual_seed(seed)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif arch == "mistral":
        model = MistralForCausalLM(MistralConfig(**{"sliding_window": None, **common}))
    elif arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    elif arch == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(**{"head_dim": hidden // heads, **common}))
    else:
        raise ValueError(f"unknown test architecture {arch!r}; choose from {ARCHS}.")
    return model.to(dtype)


def assert_close(
    actual: torch.Tensor, expected: torch.Tensor, *, rtol: float = 1e-4, atol: float = 1e-5, name: str = ""
) -> None:
    """torch.testing.assert_close with the max/mean absolute difference in the message."""
    try:
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)
    except AssertionError as err:
        diff = (actual.float() - expected.float()).abs()
        raise AssertionError(f"{name}: max |diff| {diff.max():.3e}, mean {diff.mean():.3e}\n{err}") from None


def with_lora(model: nn.Module, rank: int = 4) -> nn.Module:
    """`model` wrapped in PEFT LoRA on q/k/v/o, with B initialised nonzero.

    PEFT initialises B to zero, which would make every LoRA-A gradient zero; giving B values tests both.
    """
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0
    )
    peft_model = get_peft_model(model, cfg)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return peft_model


def loss_and_grads(model: nn.Module, ids: torch.Tensor, **kw) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The LM loss on `ids` (labels = inputs) and a copy of every trainable parameter's gradient."""
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids, **kw)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.loss.detach(), grads


def tiny_finetune_config(model_dir, data, out, **overrides):
    """A `FinetuneConfig` for a few CPU steps of a tiny model: 128-token rows, 16-token blocks, no progress bar.

    `model_dir=None` means the embedded SmolLM2. Overrides replace any field.
    """
    from lemo.config import FinetuneConfig

    base = dict(
        model=str(model_dir) if model_dir else None,
        data=[str(data)],
        seq_len=128,
        steps=4,
        save_every=2,
        output_dir=str(out),
        progress=False,
        lr=1e-2,
        warmup_steps=0,
        sparsity={"block_size": 16, "keep_ratio": 0.5},
    )
    return FinetuneConfig(**{**base, **overrides})
