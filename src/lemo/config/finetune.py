"""`FinetuneConfig`: everything `lemo finetune` takes. YAML files mirror it (nested `lora:` and `sparsity:`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

from lemo.config.checks import check_positive
from lemo.config.flags import Flag
from lemo.config.load import DictConfig
from lemo.config.lora import LoraSettings
from lemo.config.sparsity import SparsityConfig

REPORTERS = {"tensorboard": "tensorboard", "wandb": "wandb"}  # --report-to name: the package it needs


def check_report_to(names: Sequence[str]) -> None:
    """Refuse unknown `--report-to` names and names whose package is not installed (checked when the config is
    built, before any model loads, so a missing package is an error naming the install command)."""
    for name in names:
        if name not in REPORTERS:
            raise ValueError(
                f"--report-to {name!r} is unknown; use {' or '.join(REPORTERS)} (or leave it out)."
            )
        if importlib.util.find_spec(REPORTERS[name]) is None:
            raise ValueError(
                f"--report-to {name} needs the {REPORTERS[name]} package: pip install {REPORTERS[name]}."
            )


@dataclass
class FinetuneConfig(DictConfig):
    """Everything `lemo finetune` takes (`lemo.api.finetune(FinetuneConfig(...))`); `lemo finetune --help` has
    them as flags."""

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
    """AdamW weight decay of the adapter."""
    warmup_steps: int = 5
    """Linear warm-up steps (from 0), then the --lr-schedule."""
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"
    """After warm-up: "constant", "linear" decay to 0 or "cosine" decay to 0 at --steps."""
    max_grad_norm: float = 1.0
    """Gradient clipping (0 disables)."""
    steps: int = 20
    """Optimizer steps."""
    batch_size: int = 1
    """Rows per micro-batch (per rank under torchrun: a step sees batch_size x grad_accum x ranks rows)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (gradient accumulation): each step sees batch_size x grad_accum rows."""
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
    liger: bool | None = None
    """Patch the model with Liger-Kernel's fused RoPE, RMSNorm and SwiGLU (and its fused loss where lemo's
    segmented loss is off) before lemo; lemo's own layers then run them too. Unset: on where it can run (a CUDA
    device, `pip install 'lemo[liger]'`, a Llama, Mistral or Qwen2/3 model, the model's own attention), where it
    measured faster and smaller; --liger requires it, --no-liger turns it off."""
    sparsity: Annotated[SparsityConfig, Flag(prefix="")] = field(default_factory=SparsityConfig)
    predictors: str | None = None
    """Predictor directory from `lemo calibrate` (with --scorer predictor)."""
    output_dir: str = "runs/lemo"
    """Where the adapter, checkpoints, metrics and config go."""
    save_every: int = 10
    """Checkpoint every N steps (0: only at the end)."""
    resume: bool = False
    """Continue from the last checkpoint in output_dir (only --steps and reporting options may change)."""
    overwrite: bool = False
    """Start afresh in an output_dir that holds a run: the old run is moved aside (renamed to
    `<output_dir>.old-<timestamp>`), never deleted. Ignored with --resume."""
    seed: int = 0
    """Seed of the adapter's initialisation, the data order and the randomly kept blocks."""
    eval_lengths: list[int] = field(default_factory=list)
    """Context lengths for held-out perplexity before and after training (empty: none)."""
    eval_windows: int = 2
    """Windows per evaluation length."""
    progress: bool = True
    """Show a progress bar."""
    report_to: list[str] = field(default_factory=list)
    """Also log each step's metrics to "tensorboard" (output_dir/tensorboard) and/or "wandb" (needs the package)."""
    plan: bool = True
    """Predict GPU and host memory first (`lemo plan`) and stop before loading weights when the run will not fit;
    --no-plan skips the check."""
    nproc: int = 1
    """Ranks (GPUs) on this machine: above 1, lemo starts this run under torchrun itself (`torchrun --standalone
    --nproc-per-node N -m lemo finetune ...`; FSDP2, docs/distributed.md). Under torchrun, leave it out."""
    dist_timeout: int = 1800
    """Under torchrun: seconds a collective (all-gather, reduce-scatter, checkpoint barrier) may wait for the other
    ranks before the run stops with an error that explains the usual causes."""

    def __post_init__(self) -> None:
        self._build_sections()
        check_report_to(self.report_to)
        if self.steps < 1:
            raise ValueError(f"--steps {self.steps} must be at least 1.")
        if not self.lr > 0:
            raise ValueError(f"--lr {self.lr} must be positive; try --lr 2e-4.")
        check_positive("--nproc", self.nproc, "a positive number of processes such as 2")
        if self.dist_timeout < 1:
            raise ValueError(f"--dist-timeout {self.dist_timeout} must be at least 1 second; try 1800.")
        if self.grad_accum < 1:
            raise ValueError(f"--grad-accum {self.grad_accum} must be at least 1.")
        if self.lr_schedule not in ("constant", "linear", "cosine"):
            raise ValueError(
                f"--lr-schedule {self.lr_schedule!r} is unknown; use constant, linear or cosine."
            )
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
        if not self.sparse and (self.sparsity.offload != "none" or self.sparsity.tile_tokens > 0):
            raise ValueError(
                "--offload and --tile-tokens work through lemo's layers, which --no-sparse turns off; for an exact "
                "run with them, keep lemo on and turn elimination off instead: --sparse-layers none."
            )

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
