"""FinetuneConfig: everything `lemo finetune` takes. YAML files mirror it (nested `lora:` and `sparsity:`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from lemo.config import SparsityConfig


@dataclass
class LoraSettings:
    rank: int = 8
    """LoRA rank r."""
    alpha: float = 16.0
    """LoRA scaling numerator (scale = alpha / r)."""
    dropout: float = 0.0
    """Dropout on the LoRA input."""
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Module names that get adapters."""
    train_norms: bool = False
    """Also train every norm (LongLoRA's LoRA+)."""
    train_embeddings: bool = False
    """Also train the input embeddings (LongLoRA's LoRA+; tied LM heads train with them)."""


@dataclass
class FinetuneConfig:
    model: str | None = None
    """HF model directory; default: the embedded SmolLM2-135M-Instruct."""
    data: list[str] = field(default_factory=list)
    """Text (.txt) or JSONL files or folders; default: five Austen novels. JSONL lines are {"text": ...}
    (every token trained on), {"prompt": ..., "completion": ...} (only the completion and its EOS trained on)
    or {"messages": [{"role": ..., "content": ...}, ...]} (the tokenizer's chat template; only assistant turns
    trained on); formats may mix in one file."""
    eval_data: list[str] = field(default_factory=list)
    """Held-out text for perplexity before/after; default: the sixth Austen novel (Persuasion)."""
    seq_len: int = 4096
    """Tokens per training row."""
    data_mode: Literal["chunk", "pack"] = "chunk"
    """"chunk": cut the concatenated records into rows (labels follow their tokens; rows with only prompt text
    are dropped); "pack": whole records per row, positions restart at 0 per record (a text longer than a row
    is cut into pieces; a prompt/completion or chat record loses the start of its prompt instead)."""
    rope_scaling: str | None = None
    """Extend context with RoPE scaling: "linear", "yarn" or "dynamic" (with --rope-factor)."""
    rope_factor: float = 1.0
    """RoPE scaling factor (new context = factor x trained context)."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    lr: float = 2e-4
    """Peak learning rate (AdamW)."""
    weight_decay: float = 0.0
    warmup_steps: int = 5
    """Linear warm-up steps, then constant."""
    max_grad_norm: float = 1.0
    """Gradient clipping (0 disables)."""
    steps: int = 20
    """Optimizer steps."""
    batch_size: int = 1
    """Rows per step."""
    gradient_checkpointing: bool = False
    """Recompute each layer in backward (HF gradient checkpointing)."""
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    """"auto": bf16 on GPU, fp32 on CPU."""
    device: str = "auto"
    """"auto", "cpu", "cuda" or "cuda:N"."""
    attention: Literal["default", "s2"] = "default"
    """"default": the model's own attention; "s2": LongLoRA's shifted sparse attention (groups of seq_len/4, half
    the heads shifted by half a group) in training, the longlora baseline; needs token elimination off (--no-sparse
    or --sparse-layers none), --data-mode chunk and a --seq-len that is a multiple of 8."""
    sparse: bool = True
    """Token elimination on (lemo) or off (plain LoRA)."""
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    predictors: str | None = None
    """Predictor directory from `lemo calibrate` (with --scorer predictor)."""
    output_dir: str = "runs/lemo"
    """Where the adapter, checkpoints, metrics and config go."""
    save_every: int = 10
    """Checkpoint every N steps (0: only at the end)."""
    resume: bool = False
    """Continue from the last checkpoint in output_dir."""
    seed: int = 0
    eval_lengths: list[int] = field(default_factory=list)
    """Context lengths for held-out perplexity before and after training (empty: none)."""
    eval_windows: int = 2
    """Windows per evaluation length."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = LoraSettings(**self.lora)
        if isinstance(self.sparsity, dict):
            self.sparsity = SparsityConfig.from_dict(self.sparsity)
        if self.steps < 1:
            raise ValueError(f"--steps {self.steps} must be at least 1.")
        if self.seq_len < self.sparsity.block_size:
            raise ValueError(
                f"--seq-len {self.seq_len} is below one block ({self.sparsity.block_size} tokens); "
                f"use --seq-len >= {self.sparsity.block_size}."
            )
        if self.data_mode not in ("chunk", "pack"):
            raise ValueError(f"--data-mode {self.data_mode!r} is unknown; use 'chunk' or 'pack'.")
        if self.dtype not in ("auto", "bf16", "fp32"):
            raise ValueError(f"--dtype {self.dtype!r} is unknown; use auto, bf16 or fp32.")
        if self.attention not in ("default", "s2"):
            raise ValueError(f"--attention {self.attention!r} is unknown; use 'default' or 's2'.")
        if self.attention == "s2":
            self._check_s2()

    def _check_s2(self) -> None:
        # S² replaces attention in every layer, but sparse layers run their own attention in training.
        if self.sparse and self.sparsity.sparse_layers not in ("none", []):
            raise ValueError(
                "--attention s2 cannot run beside token elimination (sparse layers compute their own attention); "
                "turn elimination off with --no-sparse (or --sparse-layers none)."
            )
        if self.data_mode != "chunk":
            raise ValueError(
                "--attention s2 does not support packed rows (padding and per-document positions); "
                "use --data-mode chunk."
            )
        if self.seq_len % 8:
            raise ValueError(
                f"--attention s2 cuts each row into 4 groups shifted by half a group, so --seq-len {self.seq_len} "
                "must be a multiple of 8; use a seq_len that is."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build a (nested) config dataclass from a dict, refusing unknown keys with the list of known ones."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys: {sorted(known)}.")
    kwargs = {}
    for name, value in data.items():
        default = known[name].default_factory() if callable(known[name].default_factory) else None
        if is_dataclass(default) and isinstance(value, dict):
            value = from_dict(type(default), value)
        kwargs[name] = value
    return cls(**kwargs)


def load_yaml(path: str | Path, cls: type = FinetuneConfig) -> Any:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"config file {p} does not exist; pass --config with a YAML file (see configs/)."
        )
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{p} must hold a YAML mapping of {cls.__name__} fields.")
    return from_dict(cls, data)
