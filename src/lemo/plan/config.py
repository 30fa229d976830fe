"""PlanConfig: everything `lemo plan` takes. Its fields mirror `lemo finetune`'s, so a finetune config plans as is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lemo.config import SparsityConfig, document_fields

GIB = 2**30
DEFAULT_GPU_GIB = 80e9 / GIB  # an "80 GB" card, the cap of every committed longest-T measurement


@document_fields
@dataclass
class PlanLora:
    rank: int = 8
    """LoRA rank r."""
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Module names that get adapters."""

    def __post_init__(self) -> None:
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        # `--lora-targets q_proj,v_proj` arrives as one word; split it like the space-separated form.
        self.targets = [t.strip() for item in self.targets for t in str(item).split(",") if t.strip()]
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"--lora-rank {self.rank!r} must be a positive integer such as 8.")


@document_fields
@dataclass
class PlanConfig:
    """Everything `lemo plan` takes (`lemo.plan.predict(PlanConfig(...))`); `lemo plan --help` has them as flags."""

    model: str | None = None
    """HF model directory (only its config.json is read; no weights are loaded)."""
    shape: str | None = None
    """A named shape instead of --model: llama2-7b, llama3-8b, smollm2 or tiny."""
    seq_len: int = 4096
    """Tokens per training row (T)."""
    batch_size: int = 1
    """Rows per micro-batch."""
    lora: PlanLora = field(default_factory=PlanLora)
    sparse: bool = True
    """Token elimination on (lemo; --sparse-layers none keeps it exact with the segmented loss) or off (plain
    LoRA with the model's own loss)."""
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)
    labelled_fraction: float = 1.0
    """Share of positions that carry a label (plain text: 1; prompt/completion data: the completion's share).
    Only labelled positions reach the LM head."""
    gradient_checkpointing: bool = False
    """Recompute each layer in backward (as `lemo finetune --gradient-checkpointing`); offload="cpu" implies it."""
    dtype: Literal["bf16", "fp32"] = "bf16"
    """Weights and activations: bf16 (what `lemo finetune` uses on a GPU) or fp32 (its CPU default)."""
    device: Literal["cuda", "cpu"] = "cuda"
    """Where the step runs: "cuda" resolves backend="auto" to the Triton kernels, "cpu" to the reference ops."""
    gpu_gib: float | None = None
    """GPU memory cap in GiB (default: the device's memory when the trainer checks, else an 80 GB card)."""
    host_gib: float | None = None
    """The target machine's host RAM for pinned offload buffers (on a CPU run, for the whole step) in GiB: the
    budget LEMO_HOST_GIB gives a run's offloader, under another name (default: LEMO_HOST_GIB, else the free RAM
    of the machine that plans, which the plan then names as such)."""
    world_size: int = 1
    """Ranks the model is sharded over with FSDP2 (`torchrun --nproc-per-node N`): each GPU holds 1/N of the
    weights and adapter states after sharding, plus the layers being all-gathered; all of them while loading."""
    ranks_per_node: int | None = None
    """Ranks sharing this host's memory for pinned offload buffers (default: world_size, one node)."""
    margin: float = 0.125
    """Allocator headroom on the activations: a plan fits when weights + activations x (1 + margin) <= the cap
    (fitted to the committed longest-T searches under an 80 GB cap; see docs/plan.md)."""

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):
            self.lora = PlanLora(**self.lora)
        if isinstance(self.sparsity, dict):
            self.sparsity = SparsityConfig.from_dict(self.sparsity)
        if not isinstance(self.seq_len, int) or self.seq_len < 1:
            raise ValueError(f"--seq-len {self.seq_len!r} must be a positive number of tokens such as 32768.")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"--batch-size {self.batch_size!r} must be at least 1.")
        if self.dtype not in ("bf16", "fp32"):
            raise ValueError(f"--dtype {self.dtype!r} is unknown; use bf16 or fp32.")
        if self.device not in ("cuda", "cpu"):
            raise ValueError(f"--device {self.device!r} is unknown; use cuda or cpu.")
        for name in ("gpu_gib", "host_gib"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ValueError(
                    f"--{name.replace('_', '-')} {v!r} must be a positive number of GiB such as 80."
                )
        if not 0 < self.labelled_fraction <= 1:
            raise ValueError(f"--labelled-fraction {self.labelled_fraction!r} must be in (0, 1], e.g. 0.05.")
        for name in ("world_size", "ranks_per_node"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(
                    f"--{name.replace('_', '-')} {v!r} must be a positive number of ranks such as 2."
                )
        if self.ranks_per_node is not None and self.ranks_per_node > self.world_size:
            raise ValueError(
                f"--ranks-per-node {self.ranks_per_node} exceeds --world-size {self.world_size}; a node cannot "
                "hold more ranks than the job has."
            )
        if not 0 <= self.margin < 1:
            raise ValueError(f"--margin {self.margin!r} must be a fraction in [0, 1) such as 0.125.")

    @property
    def checkpointing(self) -> bool:
        """Whether layer inputs are checkpointed (offload stores them in host memory, so it needs them)."""
        return self.gradient_checkpointing or (self.sparse and self.sparsity.offload == "cpu")

    @classmethod
    def from_finetune(cls, finetune: Any, shape: str | None = None, **overrides: Any) -> PlanConfig:
        """The plan of a `FinetuneConfig` (duck-typed: plan sits below train and must not import it)."""
        device = str(finetune.device)
        on_cpu = device == "cpu"
        dtype = finetune.dtype
        if shape is None and finetune.model is None:
            shape = "smollm2"  # finetune's default model: the embedded SmolLM2-135M
        values = dict(
            model=None if shape else finetune.model,
            shape=shape,
            seq_len=finetune.seq_len,
            batch_size=finetune.batch_size,
            lora=PlanLora(rank=finetune.lora.rank, targets=list(finetune.lora.targets)),
            sparse=finetune.sparse,
            sparsity=finetune.sparsity,
            gradient_checkpointing=finetune.gradient_checkpointing,
            dtype="fp32" if dtype == "fp32" or (dtype == "auto" and on_cpu) else "bf16",
            device="cpu" if on_cpu else "cuda",
        )
        values.update(overrides)
        return cls(**values)
