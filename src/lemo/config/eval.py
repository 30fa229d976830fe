"""`EvalConfig`: what `lemo eval` takes; `DataConfig`: what `lemo data` takes."""

from __future__ import annotations

from dataclasses import dataclass, field

from lemo.config.checks import check_positive, flag
from lemo.config.load import DictConfig

TASKS = ("single", "multikey", "multivalue", "vartrack", "passkey")
"""The synthetic long-context tasks (`lemo.eval.tasks`)."""
MODES = ("teacher", "greedy")
"""Capability scoring modes: teacher-forced exact match and greedy-decoding exact match."""


@dataclass
class EvalConfig(DictConfig):
    """Everything `lemo eval` takes (`lemo.api.evaluate`); `lemo eval --help` has them as flags."""

    model: str | None = None
    """HF model directory; default: the embedded SmolLM2-135M-Instruct."""
    adapter: str | None = None
    """Adapter folder of a run (runs/NAME/adapter) to evaluate on top of the model."""
    data: list[str] = field(default_factory=list)
    """Text or JSONL files; default: Persuasion (the held-out Austen novel). With --task: the filler text."""
    lengths: list[int] = field(default_factory=lambda: [2048])
    """Context lengths to evaluate at."""
    windows: int = 4
    """Windows per length (0: the whole text)."""
    stride: int | None = None
    """Tokens between windows (default: the length, i.e. disjoint windows)."""
    rope_scaling: str | None = None
    """RoPE scaling the model was fine-tuned with ("linear", "yarn", "dynamic")."""
    rope_factor: float = 1.0
    """RoPE scaling factor the model was fine-tuned with (with --rope-scaling)."""
    dtype: str = "auto"
    """"auto" (bf16 on GPU, fp32 on CPU), "bf16" or "fp32"."""
    device: str = "auto"
    """"auto", "cpu", "cuda" or "cuda:N"."""
    output: str | None = None
    """Write the results to this file: JSON (perplexity); with --task, .json or .csv by suffix, else both."""
    task: str | None = None
    """Synthetic capability task (single, multikey, multivalue, vartrack, passkey) instead of perplexity."""
    depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    """With --task: relative positions of the queried needle in the context, each in [0, 1]."""
    samples: int = 8
    """With --task: samples per (length, depth) cell."""
    n_keys: int = 16
    """With --task multikey: needles per sample (one queried, the rest distractors)."""
    n_values: int = 4
    """With --task multivalue: codes of the queried name."""
    n_hops: int = 4
    """With --task vartrack: links of each variable chain."""
    n_chains: int = 1
    """With --task vartrack: chains per sample (one queried, the rest distractors)."""
    modes: list[str] = field(default_factory=lambda: list(MODES))
    """With --task: scoring modes, teacher (teacher-forced exact match) and/or greedy (greedy decoding)."""
    seed: int = 0
    """With --task: seed of the samples (names, codes, filler offsets, distractor depths)."""
    plot: str | None = None
    """With --task: PNG heatmap path (default: beside --output, same name with .png; "none": no plot)."""

    def __post_init__(self) -> None:
        if self.task is None:
            return
        if self.task not in TASKS:
            raise ValueError(f"--task {self.task!r} is unknown; use one of {', '.join(TASKS)}.")
        bad = [d for d in self.depths if not 0.0 <= d <= 1.0]
        if bad or not self.depths:
            raise ValueError(
                f"--depths {bad or '(none)'}: pass depths between 0 and 1, e.g. --depths 0.1 0.5 0.9."
            )
        if not self.modes or any(m not in MODES for m in self.modes):
            raise ValueError(f"--modes {' '.join(self.modes)}: use one or both of {', '.join(MODES)}.")
        for name in ("samples", "n_keys", "n_values", "n_chains"):
            check_positive(flag(name), getattr(self, name), ">= 1")
        if self.n_hops < 0:
            raise ValueError(f"--n-hops {self.n_hops} must be >= 0.")


@dataclass
class DataConfig(DictConfig):
    """Everything `lemo data` takes (`lemo.api.make_task_data`); `lemo data --help` has them as flags."""

    out: str | None = None
    """JSONL file to write ({"prompt", "completion"} per line); required."""
    task: str = "multikey"
    """Task of the rows (single, multikey, multivalue, vartrack, passkey)."""
    seq_len: int = 16384
    """Tokens per row (prompt + completion, special tokens and EOS included), at most."""
    rows: int = 100
    """Rows to write."""
    keys: int = 16
    """Facts per row, each asked about in the completion (single and passkey: one)."""
    n_values: int = 4
    """multivalue: codes per name."""
    n_hops: int = 4
    """vartrack: links of each variable chain."""
    data: list[str] = field(default_factory=list)
    """Filler text or JSONL files; default: the five training Austen novels (all but Persuasion)."""
    model: str | None = None
    """HF model directory whose tokenizer counts the tokens; default: the embedded SmolLM2-135M-Instruct."""
    seed: int = 0
    """Seed of names, codes, depths and filler offsets."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"--task {self.task!r} is unknown; use one of {', '.join(TASKS)}.")
        for name in ("seq_len", "rows", "keys", "n_values"):
            check_positive(flag(name), getattr(self, name), ">= 1")
