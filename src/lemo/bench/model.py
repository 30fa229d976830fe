"""The benchmarked model: a Llama shape with random weights, the embedded SmolLM2, or the user's own directory,
always wrapped in the same PEFT LoRA (r=8, alpha=16 on q/k/v/o)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lemo.integrations.peft import quiet_peft
from lemo.integrations.transformers.loading import check_model_dir
from lemo.plan.shapes import SHAPES as PLAN_SHAPES

__all__ = ["SHAPES", "build_model", "check_model_dir", "shape_name"]

SHAPES = (
    PLAN_SHAPES  # the named shapes (lemo.plan.shapes), so the benchmark and the planner mean the same model
)
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def shape_name(model_dir: str | Path) -> str:
    """What a --model run records in the CSV's `shape` column: the directory's own name ("." resolved)."""
    return Path(model_dir).expanduser().resolve().name


def build_model(shape: str, device: torch.device, max_len: int, model_dir: str | Path | None = None) -> Any:
    """The LoRA-wrapped model of `shape` (or of the directory `model_dir`, when given), in train mode."""
    from peft import LoraConfig, get_peft_model

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if model_dir is not None or shape == "smollm2":
        from lemo.integrations.transformers.loading import load_model

        if model_dir is None:
            from lemo.assets import smollm2_dir

            model_dir = smollm2_dir()
        model, _ = load_model(model_dir, dtype=dtype, device=device)
        model.config.use_cache = False
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        s = SHAPES[shape]
        cfg = LlamaConfig(
            hidden_size=s.hidden,
            intermediate_size=s.intermediate,
            num_hidden_layers=s.layers,
            num_attention_heads=s.heads,
            num_key_value_heads=s.kv_heads,
            vocab_size=s.vocab,
            max_position_embeddings=max(max_len, 4096),
            attn_implementation="sdpa",
            use_cache=False,
        )
        torch.manual_seed(0)
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            with device:  # initialise on the GPU directly: 7B random weights in seconds, no host copy
                model = LlamaForCausalLM(cfg)
        finally:
            torch.set_default_dtype(previous)
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS, lora_dropout=0.0)
    with quiet_peft():
        peft_model = get_peft_model(model, lora)
    return peft_model.train()
