"""`PredictorConfig`: the shape of one block-score predictor (see `lemo.predictor.model` for the design)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass
class PredictorConfig:
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
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"PredictorConfig.{name}={v!r} must be a positive integer.")
        for name in ("mid", "out_dim"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(
                    f"PredictorConfig.{name}={v!r} must be a positive integer or None (automatic)."
                )

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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PredictorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown PredictorConfig keys {unknown}; known keys: {sorted(known)}.")
        return cls(**data)
