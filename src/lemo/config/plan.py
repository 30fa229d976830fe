"""`PlanConfig`: everything `lemo plan` takes. Its fields are `lemo finetune`'s where they mean the same (the
`lora` and `sparsity` sections are `FinetuneConfig`'s own classes); `PlanConfig.from_finetune` plans a
`FinetuneConfig` run, which is what `lemo finetune` does before it loads weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from lemo.config.checks import check_positive, flag
from lemo.config.finetune import FinetuneConfig
from lemo.config.flags import Flag
from lemo.config.load import DictConfig
from lemo.config.lora import LoraSettings
from lemo.config.sparsity import SparsityConfig

_SAME_IN_FINETUNE = ("seq_len", "batch_size", "lora", "sparse", "sparsity", "gradient_checkpointing", "liger")
"""The fields a plan takes from a `FinetuneConfig` as they are (model, dtype and device are translated)."""


@dataclass
class PlanConfig(DictConfig):
    """Everything `lemo plan` takes (`lemo.plan.predict(PlanConfig(...))`); `lemo plan --help` has them as flags."""

    model: str | None = None
    """HF model directory (only its config.json is read; no weights are loaded)."""
    shape: str | None = None
    """A named shape instead of --model: llama2-7b, llama3-8b, smollm2 or tiny."""
    seq_len: int = 4096
    """Tokens per training row (T)."""
    batch_size: int = 1
    """Rows per micro-batch."""
    lora: LoraSettings = field(default_factory=LoraSettings)
    sparse: bool = True
    """Token elimination on (lemo; --sparse-layers none keeps it exact with the segmented loss) or off (plain
    LoRA with the model's own loss)."""
    sparsity: Annotated[SparsityConfig, Flag(prefix="")] = field(default_factory=SparsityConfig)
    liger: bool = False
    """Liger-Kernel's fused RMSNorm, SwiGLU and RoPE on the model (as `lemo finetune --liger`), and its fused linear
    cross-entropy where the model's own loss runs (`--no-sparse`, or lemo without its segmented loss)."""
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
        self._build_sections()
        check_positive("--seq-len", self.seq_len, "a positive number of tokens such as 32768")
        check_positive("--batch-size", self.batch_size, "at least 1")
        if self.dtype not in ("bf16", "fp32"):
            raise ValueError(f"--dtype {self.dtype!r} is unknown; use bf16 or fp32.")
        if self.device not in ("cuda", "cpu"):
            raise ValueError(f"--device {self.device!r} is unknown; use cuda or cpu.")
        for name in ("gpu_gib", "host_gib"):
            check_positive(
                flag(name),
                getattr(self, name),
                "a positive number of GiB such as 80",
                integer=False,
                optional=True,
            )
        if not 0 < self.labelled_fraction <= 1:
            raise ValueError(f"--labelled-fraction {self.labelled_fraction!r} must be in (0, 1], e.g. 0.05.")
        check_positive("--world-size", self.world_size, "a positive number of ranks such as 2")
        check_positive(
            "--ranks-per-node", self.ranks_per_node, "a positive number of ranks such as 2", optional=True
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
    def from_finetune(
        cls, finetune: FinetuneConfig, shape: str | None = None, **overrides: Any
    ) -> PlanConfig:
        """The plan of a `FinetuneConfig` run; `overrides` set plan-only fields such as `world_size`."""
        on_cpu = str(finetune.device) == "cpu"
        if shape is None and finetune.model is None:
            shape = "smollm2"  # finetune's default model: the embedded SmolLM2-135M
        values = {name: getattr(finetune, name) for name in _SAME_IN_FINETUNE}
        values.update(
            model=None if shape else finetune.model,
            shape=shape,
            dtype="fp32" if finetune.dtype == "fp32" or (finetune.dtype == "auto" and on_cpu) else "bf16",
            device="cpu" if on_cpu else "cuda",
        )
        values.update(overrides)
        return cls(**values)
