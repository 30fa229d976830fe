"""Model shapes for the planner: read from an HF config.json, or named (the benchmark's shapes).

Only the numbers that set memory and work are read; no weights are touched and transformers is not imported,
so planning a 70B run costs nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer with a SwiGLU MLP (Llama, Mistral, Qwen, SmolLM...)."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    head_dim: int = 0
    """0: hidden // heads."""
    tied_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.head_dim == 0:
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        for field in ("hidden", "intermediate", "layers", "heads", "kv_heads", "vocab"):
            if getattr(self, field) < 1:
                raise ValueError(
                    f"model shape {self.name!r}: {field}={getattr(self, field)} must be positive."
                )

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def in_out(self, module: str) -> tuple[int, int]:
        """(in, out) features of a linear module by its HF name, for LoRA sizes."""
        d, i = self.hidden, self.intermediate
        table = {
            "q_proj": (d, self.q_dim),
            "k_proj": (d, self.kv_dim),
            "v_proj": (d, self.kv_dim),
            "o_proj": (self.q_dim, d),
            "gate_proj": (d, i),
            "up_proj": (d, i),
            "down_proj": (i, d),
        }
        if module not in table:
            raise ValueError(
                f"LoRA target {module!r} is not a linear of a Llama-style layer; use {sorted(table)}."
            )
        return table[module]

    def attention_params(self) -> int:
        """Weights of one layer's q/k/v/o projections (the linears every kept row runs)."""
        return 2 * self.hidden * self.q_dim + 2 * self.hidden * self.kv_dim

    def mlp_params(self) -> int:
        return 3 * self.hidden * self.intermediate

    def total_params(self) -> int:
        norms = (2 * self.layers + 1) * self.hidden
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        return self.layers * (self.attention_params() + self.mlp_params()) + norms + embeddings


# The shapes of lemo/bench/model.py (its SHAPES) plus SmolLM2-135M, lemo's embedded model, so the planner
# can be checked against every committed benchmark row without the model files.
SHAPES: dict[str, ModelShape] = {
    "llama2-7b": ModelShape("llama2-7b", 4096, 11008, 32, 32, 32, 32000),
    "llama3-8b": ModelShape("llama3-8b", 4096, 14336, 32, 32, 8, 128256),
    "smollm2": ModelShape("smollm2", 576, 1536, 30, 9, 3, 49152, head_dim=64, tied_embeddings=True),
    "tiny": ModelShape("tiny", 256, 512, 4, 4, 2, 1024),
}


def shape_from_config(data: dict, name: str = "model") -> ModelShape:
    """A shape from the fields of an HF config.json (text config of a multimodal model included)."""
    cfg = data.get("text_config", data)
    try:
        hidden = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        return ModelShape(
            name=name,
            hidden=hidden,
            intermediate=int(cfg["intermediate_size"]),
            layers=int(cfg["num_hidden_layers"]),
            heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            vocab=int(cfg["vocab_size"]),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            tied_embeddings=bool(data.get("tie_word_embeddings", cfg.get("tie_word_embeddings", False))),
        )
    except KeyError as err:
        raise ValueError(
            f"{name}: config.json lacks {err.args[0]!r}; the planner needs a Llama-style decoder config "
            "(hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, vocab_size)."
        ) from None


def resolve_shape(model: str | None, shape: str | None) -> ModelShape:
    """The shape of `model` (an HF directory or its config.json) or of the named `shape`."""
    if model and shape:
        raise ValueError("give either --model (a model directory) or --shape (a named shape), not both.")
    if shape:
        if shape not in SHAPES:
            raise ValueError(f"--shape {shape!r} is unknown; use one of {', '.join(SHAPES)} or --model DIR.")
        return SHAPES[shape]
    if not model:
        raise ValueError("nothing to plan: pass --model DIR (an HF model directory) or --shape llama3-8b.")
    path = Path(model)
    path = path / "config.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist; pass an HF model directory holding config.json, or --shape NAME."
        )
    return shape_from_config(json.loads(path.read_text(encoding="utf-8")), name=path.parent.name or str(path))
