"""The predictors' two configs: `PredictorConfig`, the shape of one block-score predictor (see
`lemo.predictor.model` for the design), and `PredictorTrainingConfig`, how calibration trains a set of them (the
`calibration` section of `CalibrateConfig`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from lemo.config.checks import check_positive
from lemo.config.load import DictConfig


@dataclass
class PredictorConfig(DictConfig):
    """The shape of every predictor of a set (pruning may later narrow `hidden`/`mid` per layer and tower)."""

    d_model: int
    """Hidden size of the model (the width of the normed hidden states)."""
    slice_dim: int
    """Width of one slice of the hidden state; the model's head size by default (the artifact's choice)."""
    block_size: int = 64
    """Tokens per block; must equal SparsityConfig.block_size at use."""
    hidden: int = 128
    """First hidden width of each tower (the artifact's 128)."""
    mid: int | None = None
    """Second hidden width; None: block_size * slice_dim, the artifact's (8192 for b=64, head size 128)."""
    out_dim: int | None = None
    """Width of q_hat and k_hat; None means slice_dim."""
    bias: bool = False
    """Linear biases (the artifact trains without them)."""
    pool: str = "concat"
    """"concat": the artifact's MLP over each (slice, block) vector; "max": per-token tower, max over the block."""

    def __post_init__(self) -> None:
        if self.pool not in ("concat", "max"):
            raise ValueError(f"PredictorConfig.pool={self.pool!r} is unknown; use 'concat' or 'max'.")
        for name in ("d_model", "slice_dim", "block_size", "hidden"):
            check_positive(f"PredictorConfig.{name}", getattr(self, name), "a positive integer")
        for name in ("mid", "out_dim"):
            what = "a positive integer or None (automatic)"
            check_positive(f"PredictorConfig.{name}", getattr(self, name), what, optional=True)

    @property
    def n_slices(self) -> int:
        return math.ceil(self.d_model / self.slice_dim)

    @property
    def in_dim(self) -> int:
        """Tower input: one (slice, block) vector of b*s values ("concat") or one token's d values ("max")."""
        return self.block_size * self.slice_dim if self.pool == "concat" else self.d_model

    @property
    def mid_dim(self) -> int:
        if self.mid is not None:
            return self.mid
        return self.in_dim if self.pool == "concat" else 2 * self.hidden

    @property
    def out(self) -> int:
        """Width of q_hat / k_hat per slice (pseudo-head)."""
        return self.out_dim if self.out_dim is not None else self.slice_dim

    @property
    def tower_out(self) -> int:
        """Tower output width: o per slice ("concat"), all S pseudo-heads at once ("max")."""
        return self.out if self.pool == "concat" else self.n_slices * self.out


@dataclass
class PredictorTrainingConfig(DictConfig):
    """How predictors are trained: chunks, steps, optimiser, loss, widths, pruning, sample cache.

    The `calibration` section of `lemo calibrate` (`CalibrateConfig`, which adds the model, data and output of a
    run); its flags mirror these fields. Named for what it configures, so that it does not read like the
    command's config.
    """

    seq_len: int = 4096
    """Tokens per training chunk (the paper: 16K on GPU; the maps are per block, so lengths transfer)."""
    steps: int = 400
    """Optimizer steps; each step sees one chunk and every sparse layer (the artifact: 400)."""
    lr: float = 1e-3
    """Peak AdamW learning rate (the artifact's 2e-5 is for unnormalised bf16 maps; ours are normalised)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.95)
    """AdamW betas (two numbers: --betas 0.9 0.95)."""
    warmup_steps: int = 20
    """Linear warm-up steps of the learning rate, then the --schedule."""
    schedule: str = "cosine"
    """"constant" (the artifact) or "cosine" (decays to 10% of lr; converges better in few steps)."""
    max_grad_norm: float = 1.0
    """Gradient clipping over all predictors (0 disables)."""
    huber_beta: float = 0.05
    """SmoothL1 transition point, in units of the map's maximum (normalised targets lie in [0, 1])."""
    score_weight: float = 1.0
    """Weight of the extra loss on the informativeness I_n (what selection ranks); 0: the map only."""
    hidden: int = 128
    """Predictor first hidden width (the artifact's 128)."""
    mid: int | None = None
    """Predictor second hidden width; None: block_size * slice_dim, the artifact's shape."""
    slice_dim: int | None = None
    """Width of one hidden-state slice; None: the model's head size."""
    pool: str = "concat"
    """Predictor kind: "concat" (the artifact's) or "max" (per-token tower, max over the block; see model.py)."""
    prune_every: int = 100
    """Elastic pruning interval in steps (0 disables pruning)."""
    prune_threshold: float = 0.8
    """First pruning round removes units dead (pre-ReLU <= 0) on at least this share of inputs."""
    prune_decay: float = 0.05
    """The threshold drops by this much after each round (0.80, 0.75, 0.70 ...)."""
    prune_until: float = 0.8
    """No pruning after this fraction of the steps, so the last steps fine-tune the final shape."""
    min_units: int = 8
    """Pruning never narrows a width below this."""
    cache_gb: float = 4.0
    """Host memory for cached hidden states and targets; chunks beyond it are recomputed when used."""
    cache_dtype: str = "bfloat16"
    """Storage dtype of cached hidden states ("bfloat16" halves the memory; targets stay float32)."""
    cache_dir: str | None = None
    """Also keep collected samples on disk here, keyed by model, layers, block size and tokens, so that a
    rerun (other settings, more steps) skips the frozen forward. None: memory only."""
    max_chunks: int | None = None
    """Use at most this many training chunks (None: all the texts give)."""
    seed: int = 0
    """Seed of the predictors' initialisation and of the order of training chunks."""
    progress: bool = True
    """Show tqdm progress bars."""
    plot_layers: int = 3
    """How many layers to draw in the predicted-vs-oracle PNG (when an output directory is given)."""

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"--steps {self.steps} must be at least 1.")
        if self.seq_len < 1:
            raise ValueError(f"--seq-len {self.seq_len} must be positive.")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"--schedule {self.schedule!r} is unknown; use 'constant' or 'cosine'.")
        if not 0.0 < self.prune_threshold <= 1.0:
            raise ValueError(f"--prune-threshold {self.prune_threshold} must be in (0, 1].")
        if self.pool not in ("concat", "max"):
            raise ValueError(f"--pool {self.pool!r} is unknown; use 'concat' (the artifact's) or 'max'.")
        if self.cache_dtype not in ("bfloat16", "float16", "float32"):
            raise ValueError(
                f"--cache-dtype {self.cache_dtype!r} is unknown; use bfloat16, float16 or float32."
            )
        if isinstance(self.betas, list):
            self.betas = (float(self.betas[0]), float(self.betas[1]))
