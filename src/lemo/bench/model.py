"""The benchmarked model: a Llama shape with random weights, the embedded SmolLM2, or the user's own directory,
always wrapped in the same PEFT LoRA (r=8, alpha=16 on q/k/v/o)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

SHAPES = {
    # name: (hidden, intermediate, layers, heads, kv_heads, vocab); "smollm2" loads the real embedded model instead
    "llama2-7b": (4096, 11008, 32, 32, 32, 32000),
    "llama3-8b": (4096, 14336, 32, 32, 8, 128256),
    "tiny": (256, 512, 4, 4, 2, 1024),
    "smollm2": None,
}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def check_model_dir(model_dir: str | Path) -> Path:
    """`model_dir` as a Path when it looks like a saved HF model; ValueError naming the fix when it does not.

    Checked before anything is measured or loaded, so a typo costs no matmul calibration and prints no traceback.
    """
    path = Path(model_dir).expanduser()
    fix = (
        "pass --model a local Hugging Face model directory (config.json and weights, as save_pretrained writes "
        "them), or --shape NAME for a built-in shape (" + ", ".join(sorted(SHAPES)) + ")"
    )
    if not path.is_dir():
        raise ValueError(f"--model {model_dir}: no such directory; {fix}")
    if not (path / "config.json").is_file():
        raise ValueError(f"--model {model_dir}: not a model directory (no config.json); {fix}")
    # transformers' own message for this names file patterns, not the fix; sharded weights have an index file.
    if not any(any(path.glob(pattern)) for pattern in ("*.safetensors", "*.bin", "*.index.json")):
        raise ValueError(f"--model {model_dir}: no weights (*.safetensors or pytorch_model.bin); {fix}")
    # The tokens are random, but lemo's loader loads the tokenizer too; without one it fails with a message
    # about sentencepiece that hides the real cause.
    if not any(path.glob("tokenizer*")):
        raise ValueError(
            f"--model {model_dir}: no tokenizer files (tokenizer.json, tokenizer_config.json, ...); save the "
            "tokenizer next to the weights (tokenizer.save_pretrained(DIR)), or copy them from the base model"
        )
    return path


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

        hidden, inter, layers, heads, kv, vocab = SHAPES[shape]
        cfg = LlamaConfig(
            hidden_size=hidden,
            intermediate_size=inter,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            vocab_size=vocab,
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
    with warnings.catch_warnings():
        # PEFT reads the deprecated `is_gradient_checkpointing` of transformers >= 5.2x: a warning about code
        # neither lemo nor the user wrote, once per run. Only that message, only around the wrapping.
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        peft_model = get_peft_model(model, lora)
    return peft_model.train()
