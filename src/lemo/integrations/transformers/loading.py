"""Loading an HF causal LM + tokenizer from a local directory, with optional RoPE scaling to extend context."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)
ROPE_TYPES = ("linear", "yarn", "dynamic")


def rope_scaled_config(model_dir: str | Path, rope_scaling: str | None, factor: float) -> Any:
    """The model's config with its RoPE stretched by `factor` (positions extend to factor x the trained length)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    if rope_scaling is None or factor == 1.0:
        return config
    if rope_scaling not in ROPE_TYPES:
        raise ValueError(f"--rope-scaling {rope_scaling!r} is unknown; use one of {ROPE_TYPES}.")
    if factor <= 1.0:
        raise ValueError(f"--rope-factor {factor} must be above 1 to extend the context.")
    original = config.max_position_embeddings
    params = dict(getattr(config, "rope_parameters", None) or {})
    theta = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
    params = {"rope_type": rope_scaling, "factor": float(factor), "rope_theta": theta}
    if rope_scaling in ("yarn", "dynamic"):
        params["original_max_position_embeddings"] = original
    config.rope_parameters = params
    config.max_position_embeddings = int(original * factor)
    log.info("RoPE %s x%g: context %d -> %d", rope_scaling, factor, original, config.max_position_embeddings)
    return config


def load_model(
    model_dir: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    rope_scaling: str | None = None,
    rope_factor: float = 1.0,
) -> tuple[nn.Module, Any]:
    """(model, tokenizer) from a local HF directory, never from a hub."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(model_dir)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a model directory (no config.json); pass --model DIR with a saved HF model, "
            "or leave --model out to use the embedded SmolLM2-135M-Instruct."
        )
    config = rope_scaled_config(path, rope_scaling, rope_factor)
    model = AutoModelForCausalLM.from_pretrained(
        path, config=config, dtype=dtype, attn_implementation="sdpa", local_files_only=True
    )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model.to(device), tokenizer


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """HF gradient checkpointing (non-reentrant) with inputs that require grad, as PEFT models need.

    transformers renamed `gradient_checkpointing_enable` to `activation_checkpointing_enable` after 5.17 and the
    old name warns; the oldest supported version has only the old one.
    """
    enable = getattr(model, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()


WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.safetensors.index.json", "*.bin.index.json")


def check_model_dir(model_dir: str | Path, alternative: str = "") -> Path:
    """`model_dir` as a Path when `load_model` can load it; a ValueError naming the fix when it cannot.

    Checked before anything is loaded or measured, so a typo costs nothing and prints no traceback: transformers'
    own messages name file patterns (or sentencepiece, for a missing tokenizer), not the fix. `alternative` is the
    caller's other way out (`lemo bench`: a built-in --shape), added to the advice.
    """
    path = Path(model_dir).expanduser()
    fix = (
        "pass --model a local Hugging Face model directory (config.json, weights and tokenizer, as save_pretrained "
        "writes them)" + (f", or {alternative}" if alternative else "")
    )
    if not path.is_dir():
        raise ValueError(f"--model {model_dir} is not a model directory (no such directory); {fix}.")
    if not (path / "config.json").is_file():
        raise ValueError(f"--model {model_dir} is not a model directory (no config.json); {fix}.")
    # The architecture first: copying a GPT-2's weights in, as the weights check would ask, cannot make it run.
    check_architecture(path / "config.json", model_dir)
    if not any(any(path.glob(pattern)) for pattern in WEIGHT_FILES):
        raise ValueError(
            f"--model {model_dir}: the directory has a config.json but no weights (*.safetensors or *.bin); copy "
            "the weight files there, or pass another --model."
        )
    if not any(path.glob("tokenizer*")):
        raise ValueError(
            f"--model {model_dir}: no tokenizer files (tokenizer.json, tokenizer_config.json, ...); save the "
            "tokenizer next to the weights (tokenizer.save_pretrained(DIR)), or copy them from the base model."
        )
    return path


def check_architecture(config_json: Path, model_dir: str | Path) -> None:
    """A ValueError naming the supported architectures when config.json's model_type is not one of them."""
    from lemo.integrations.transformers.archs import spec_for

    try:
        model_type = json.loads(config_json.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, UnicodeDecodeError, AttributeError) as err:
        raise ValueError(
            f"--model {model_dir}: config.json cannot be read as a JSON object ({err}); save the model again "
            "(model.save_pretrained(DIR)) or copy its config.json from the base model."
        ) from None
    if model_type is None:
        return  # nothing to judge by; loading names the problem if there is one
    try:
        spec_for(model_type)
    except ValueError as err:
        raise ValueError(f"--model {model_dir}: {err}") from None
