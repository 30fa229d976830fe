"""FinetuneConfig: everything `lemo finetune` takes. YAML files mirror it (nested `lora:` and `sparsity:`)."""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from lemo.config import SparsityConfig
from lemo.train.reporting import check_report_to
from lemo.train.typecheck import coerce


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

    def __post_init__(self) -> None:
        # `--lora-targets q_proj,v_proj` arrives as one word; split it like the space-separated form.
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        self.targets = [t.strip() for item in self.targets for t in str(item).split(",") if t.strip()]
        if not self.targets:
            raise ValueError("--lora-targets is empty; name modules such as q_proj v_proj.")


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
    liger: bool = False
    """Patch the model with Liger-Kernel's fused RoPE, RMSNorm and SwiGLU (and its fused loss where lemo's
    segmented loss is off) before lemo; lemo's own layers then run them too. Needs `pip install 'lemo[liger]'`."""
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
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
        if isinstance(self.lora, dict):
            self.lora = LoraSettings(**self.lora)
        if isinstance(self.sparsity, dict):
            self.sparsity = SparsityConfig.from_dict(self.sparsity)
        check_report_to(self.report_to)
        if self.steps < 1:
            raise ValueError(f"--steps {self.steps} must be at least 1.")
        if not self.lr > 0:
            raise ValueError(f"--lr {self.lr} must be positive; try --lr 2e-4.")
        if not isinstance(self.nproc, int) or self.nproc < 1:
            raise ValueError(f"--nproc {self.nproc!r} must be a positive number of processes such as 2.")
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")


def from_dict(cls: type, data: dict[str, Any], _prefix: str = "") -> Any:
    """Build a (nested) config dataclass from a dict, refusing unknown keys with the list of known ones and
    values of the wrong type (checked here so the dataclass's own checks never meet e.g. a string step count)."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys: {sorted(known)}.")
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an unresolvable annotation: leave the checks to the dataclass
        hints = {}
    kwargs = {}
    for name, value in data.items():
        default = known[name].default_factory() if callable(known[name].default_factory) else None
        if is_dataclass(default):
            if not isinstance(value, dict | type(default)):
                raise ValueError(
                    f"{_prefix}{name}: {value!r} must be a mapping of {type(default).__name__} keys."
                )
            if isinstance(value, dict):
                value = from_dict(type(default), value, f"{_prefix}{name}.")
        else:
            try:
                value = coerce(value, hints.get(name, Any))
            except TypeError as err:
                example = default if default is not None else known[name].default
                raise ValueError(f"{_prefix}{name}: {err} (e.g. {name}: {example!r}).") from None
        kwargs[name] = value
    return cls(**kwargs)


def load_yaml(path: str | Path, cls: type = FinetuneConfig) -> Any:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"config file {p} does not exist; pass --config with a YAML file (see configs/)."
        )
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(
            f"{p} is not valid YAML{at}: {problem}; fix that line (see configs/ for examples)."
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{p} must hold a YAML mapping of {cls.__name__} fields.")
    try:
        return from_dict(cls, data)
    except ValueError as err:
        raise ValueError(f"{p}: {err}") from None
