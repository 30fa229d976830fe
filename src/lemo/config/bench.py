"""`BenchConfig`: everything `lemo bench` takes (`lemo.bench.run`); `lemo bench --help` has them as flags.

The sparse configs measure what a user gets: `keep_ratio` and `backend` default to `SparsityConfig()`'s, read
when a config is made, so a new library default moves the benchmark's with it. The shape and config names are
checked against `lemo.bench` (which this layer cannot import) by the benchmark and by its flags' choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from lemo.config.checks import check_fraction, check_positive, flag
from lemo.config.flags import Flag
from lemo.config.load import DictConfig
from lemo.config.sparsity import Backend, SparsityConfig


def _product_keep_ratio() -> float:
    return SparsityConfig().keep_ratio  # type: ignore[return-value]  # one number by default


def _product_backend() -> Backend:
    return SparsityConfig().backend


@dataclass
class BenchConfig(DictConfig):
    """One end-to-end benchmark run: which model, lengths and configurations, how each is measured, and the CSV
    its rows are appended to."""

    shape: Annotated[str, Flag(group="model")] = "llama2-7b"
    """Named model shape (lemo.plan.shapes): the Llama shapes get random-init weights, "smollm2" is the embedded
    model, "tiny" a test model."""
    model: Annotated[str | None, Flag(group="model", metavar="DIR")] = None
    """Benchmark this local HF model directory (its real weights, the same LoRA) instead of a --shape; the CSV's
    shape column records the directory's name."""
    lengths: list[int] = field(default_factory=lambda: [8192, 16384])
    """Sequence lengths T of --mode steps: one row per (config, T)."""
    configs: list[str] = field(default_factory=lambda: ["lora", "lemo"])
    """Configurations to measure, in order (lemo.bench.configs; the list above)."""
    mode: Literal["steps", "longest"] = "steps"
    """steps: one row per (config, T); longest: search the largest T that fits under --cap-gib."""
    cap_gib: float | None = None
    """GPU memory cap in GiB (--mode longest default: 80 GB = 74.5 GiB; steps mode: none unless given)."""
    granularity: int = 8192
    """Longest-T search resolution (tokens)."""
    search_start: int = 8192
    """--mode longest: the first T probed; the search doubles it until a step does not fit, then bisects."""
    search_max: int = 1 << 20
    """--mode longest: the largest T the doubling probes."""
    budget_s: float = 0.0
    """Start no new run after this many seconds (0: none)."""
    keep_ratio: float = field(default_factory=_product_keep_ratio)
    """Kept fraction of the lemo configs; the default is SparsityConfig's."""
    backend: Backend = field(default_factory=_product_backend)
    """Op implementation of the lemo configs: "auto" (Triton on CUDA, reference elsewhere), "reference" or
    "triton"; the default is SparsityConfig's."""
    tile_tokens: int = 8192
    """MLP tile rows of the +tiled configs."""
    probe_lengths: list[int] = field(default_factory=list)
    """--mode longest: probe exactly these T (e.g. a plan's prediction and one step above) instead of doubling
    and bisecting."""
    steps: int = 3
    """Timed training steps per row (the row reports their median)."""
    warmup: int = 1
    """Untimed steps before them (compilation, autotuning, allocator growth)."""
    warmup_layers: Literal["all", "few"] = "all"
    """all: warm-up steps run the whole model; few: they run through one dense and one sparse layer only (compiling and autotuning at the
    step's shapes), for long T where a full step fills the time there is; the timed step then also pays for
    growing the host pool."""
    completion: float = 0.0
    """Supervise only the last fraction of each row, as prompt/completion data does (0: every position)."""
    out: str = "benchmarks/results/e2e.csv"
    """CSV the rows are appended to, one at a time (an existing file keeps its columns)."""

    def __post_init__(self) -> None:
        for name in ("granularity", "search_start", "search_max", "steps"):
            check_positive(flag(name), getattr(self, name), "a positive integer")
        for name in ("lengths", "probe_lengths"):
            for length in getattr(self, name):
                check_positive(flag(name), length, "positive numbers of tokens such as 8192")
        if self.warmup < 0:
            raise ValueError(f"--warmup {self.warmup} must be >= 0.")
        check_fraction("--keep-ratio", self.keep_ratio)
        if not 0.0 <= self.completion <= 1.0:
            raise ValueError(
                f"--completion {self.completion} must be in [0, 1], e.g. 0.1 (0: every position)."
            )
