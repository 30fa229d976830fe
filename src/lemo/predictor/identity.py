"""Which model a set of predictors belongs to, so that predictors made for another model are refused.

A predictor reads one model's hidden states at one layer: its weights mean nothing for another model, even one
of the same shape. The identity therefore records the shape of the model (type, sizes, heads, vocabulary)
and a fingerprint of one weight matrix (the first layer's q_proj), compared with a tolerance so that the same
checkpoint loaded in bf16, fp32 or with LoRA merged still matches, while a different checkpoint does not.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

FINGERPRINT_SAMPLES = 64
# Cosine between the sampled entries of two fingerprints at or above which they are "the same weights".
# bf16 rounding gives ~0.99999, LoRA merging ~0.999, 4-bit quantisation ~0.99; unrelated weights ~0.
FINGERPRINT_MIN_COSINE = 0.95
# Allowed relative difference of the RMS of the whole matrix (catches a rescaled or different checkpoint).
FINGERPRINT_RMS_TOL = 0.1

_SHAPE_FIELDS = (
    "model_type",
    "hidden_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "vocab_size",
)


def weight_fingerprint(weight: torch.Tensor, samples: int = FINGERPRINT_SAMPLES) -> dict[str, Any]:
    """A small, dtype-robust summary of a weight matrix: `samples` evenly spaced entries and the RMS.

    Returns {} for quantised (integer) storage, whose raw values do not mean the weights.
    """
    if not (weight.is_floating_point()):
        return {}
    flat = weight.detach().reshape(-1).float().cpu()  # [numel]
    idx = torch.linspace(0, flat.numel() - 1, min(samples, flat.numel())).round().long()  # [samples]
    return {"samples": [float(v) for v in flat[idx]], "rms": float(flat.square().mean().sqrt())}


def fingerprint_match(a: dict[str, Any], b: dict[str, Any]) -> tuple[bool, str]:
    """Whether two fingerprints describe the same weights, and a short reason when they do not."""
    if not a or not b:
        return True, "no fingerprint to compare"
    sa, sb = torch.tensor(a["samples"]), torch.tensor(b["samples"])
    if sa.shape != sb.shape:
        return False, f"fingerprint sizes differ ({sa.numel()} vs {sb.numel()})"
    cos = float(torch.nn.functional.cosine_similarity(sa, sb, dim=0)) if sa.norm() and sb.norm() else 1.0
    rms_a, rms_b = float(a["rms"]), float(b["rms"])
    rel = abs(rms_a - rms_b) / max(rms_a, rms_b, 1e-30)
    if cos < FINGERPRINT_MIN_COSINE or rel > FINGERPRINT_RMS_TOL:
        return (
            False,
            f"q_proj fingerprint cosine {cos:.3f} (needs >= {FINGERPRINT_MIN_COSINE}), "
            f"RMS {rms_a:.4g} vs {rms_b:.4g}",
        )
    return True, f"q_proj fingerprint cosine {cos:.4f}"


@dataclass
class ModelIdentity:
    """The shape and a weight fingerprint of the model a predictor set was calibrated on."""

    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    name: str = ""
    """Informational only (e.g. the HF `name_or_path`): paths differ between machines, so not compared."""
    fingerprint: dict[str, Any] = field(default_factory=dict)
    """`weight_fingerprint` of the first decoder layer's q_proj weight ({} when unavailable)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelIdentity:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def describe(self) -> str:
        name = f"{self.name} " if self.name else ""
        return (
            f"{name}({self.model_type}, hidden {self.hidden_size}, {self.num_layers} layers, "
            f"{self.num_heads} heads, "
            f"{self.num_kv_heads} kv heads, head_dim {self.head_dim}, vocab {self.vocab_size})"
        )

    def mismatch(self, other: ModelIdentity) -> list[str]:
        """Human-readable differences that make predictors for `self` unusable on `other` ([] if none)."""
        diffs = [
            f"{f}: {getattr(self, f)!r} vs {getattr(other, f)!r}"
            for f in _SHAPE_FIELDS
            if getattr(self, f) != getattr(other, f)
        ]
        if not diffs:
            ok, why = fingerprint_match(self.fingerprint, other.fingerprint)
            if not ok:
                diffs.append(f"same shape but different weights: {why}")
        return diffs

    def check(self, other: ModelIdentity, *, source: str = "these predictors", strict: bool = True) -> None:
        """Raise ValueError if predictors calibrated on `self` cannot serve `other` (the model at hand).

        With `strict=False` a fingerprint difference alone is tolerated (same shape, e.g. a fine-tuned
        checkpoint whose q_proj moved a lot); shape differences are always fatal: the tensors would not fit.
        """
        diffs = self.mismatch(other)
        if not strict:
            diffs = [d for d in diffs if not d.startswith("same shape")]
        if diffs:
            hint = ""
            if strict and all(d.startswith("same shape") for d in diffs):
                hint = (
                    " If this checkpoint is a fine-tuned version of the calibrated one, "
                    "load_predictors(dir, model, strict=False) accepts it."
                )
            raise ValueError(
                f"{source} were calibrated for {self.describe()}, but this model is {other.describe()}; "
                f"differences: {'; '.join(diffs)}. Run `lemo calibrate` for this model (or "
                f"lemo.calibrate(model, texts).save(dir)) and load that directory instead.{hint}"
            )


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def validate_identity(identity: ModelIdentity) -> None:
    """Fail early on an identity that cannot describe a model (e.g. a hand-edited JSON)."""
    for f in _SHAPE_FIELDS[1:]:
        v = getattr(identity, f)
        if not _is_int(v) or v <= 0:
            raise ValueError(f"model identity field {f}={v!r} must be a positive integer.")
    if identity.num_heads % identity.num_kv_heads:
        raise ValueError(
            f"num_heads={identity.num_heads} is not a multiple of num_kv_heads={identity.num_kv_heads}."
        )
    if not math.isfinite(float(identity.fingerprint.get("rms", 0.0))):
        raise ValueError("model identity fingerprint has a non-finite RMS.")
