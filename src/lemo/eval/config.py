"""EvalConfig: what `lemo eval` takes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EvalConfig:
    model: str | None = None
    """HF model directory; default: the embedded SmolLM2-135M-Instruct."""
    adapter: str | None = None
    """Adapter folder of a run (runs/NAME/adapter) to evaluate on top of the model."""
    data: list[str] = field(default_factory=list)
    """Text or JSONL files; default: Persuasion (the held-out Austen novel)."""
    lengths: list[int] = field(default_factory=lambda: [2048])
    """Context lengths to evaluate at."""
    windows: int = 4
    """Windows per length (0: the whole text)."""
    stride: int | None = None
    """Tokens between windows (default: the length, i.e. disjoint windows)."""
    rope_scaling: str | None = None
    """RoPE scaling the model was fine-tuned with ("linear", "yarn", "dynamic")."""
    rope_factor: float = 1.0
    dtype: str = "auto"
    device: str = "auto"
    output: str | None = None
    """Write the results as JSON to this file."""
