"""`LoraSettings`: the adapter, one section shared by `lemo finetune` (what it trains) and `lemo plan` (what it
sizes), so the two commands read the same `lora:` section and the same `--lora-*` flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from lemo.config.checks import check_positive
from lemo.config.load import DictConfig


@dataclass
class LoraSettings(DictConfig):
    """The LoRA adapter; the flags are these fields with a `--lora-` prefix (`--lora-rank 16`)."""

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
        check_positive("--lora-rank", self.rank, "at least 1")
        # `--lora-targets q_proj,v_proj` arrives as one word; split it like the space-separated form.
        if isinstance(self.targets, str):
            self.targets = [self.targets]
        self.targets = [t.strip() for item in self.targets for t in str(item).split(",") if t.strip()]
        if not self.targets:
            raise ValueError("--lora-targets is empty; name modules such as q_proj v_proj.")
