"""`CalibrateConfig`: everything `lemo calibrate` takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from lemo.config.flags import Flag
from lemo.config.load import DictConfig
from lemo.config.predictor import PredictorTrainingConfig
from lemo.config.sparsity import SparsityConfig


@dataclass
class CalibrateConfig(DictConfig):
    """One `lemo calibrate` run (the command's config, as `FinetuneConfig` is `lemo finetune`'s): which model and
    texts, where the predictors go, an optional keep-ratio budget, and two nested sections: `sparsity` (the
    sparse layers and blocks the predictors serve) and `calibration` (how they are trained,
    `PredictorTrainingConfig`). The flags and YAML keys are those field names, unchanged by the class names."""

    model: str | None = None
    """HF model directory; default: the embedded SmolLM2-135M-Instruct."""
    data: list[str] = field(default_factory=list)
    """Texts to calibrate on (.txt/.jsonl files or folders); default: five Austen novels."""
    holdout: list[str] = field(default_factory=list)
    """Held-out texts for recall and the budget search; default: Persuasion."""
    output: str = "runs/predictors"
    """Folder for predictors.safetensors, predictors.json, calibration.json and the PNG plots."""
    budget: float | None = None
    """Target mean kept-token fraction over the sparse layers: choose per-layer keep ratios within it."""
    write_config: str | None = None
    """With --budget: write the chosen `sparsity:` section into this YAML (read by `lemo finetune --config`)."""
    dtype: str = "auto"
    """"auto" (bf16 on GPU, fp32 on CPU), "bf16" or "fp32": the model's weights and activations."""
    device: str = "auto"
    """"auto", "cpu", "cuda" or "cuda:N"."""
    sparsity: Annotated[SparsityConfig, Flag(prefix="")] = field(default_factory=SparsityConfig)
    calibration: Annotated[PredictorTrainingConfig, Flag(prefix="")] = field(
        default_factory=PredictorTrainingConfig
    )

    def __post_init__(self) -> None:
        self._build_sections()
