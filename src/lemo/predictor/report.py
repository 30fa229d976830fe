"""What calibration reports: `CalibrationReport` (per-layer recall, loss curve, sizes, times) and its plots."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lemo.predictor.model import PredictorSet
from lemo.predictor.samples import Sample


@dataclass
class CalibrationReport:
    """What a calibration run did and how good the result is; JSON-serialisable via `to_dict`."""

    model: dict[str, Any]
    layers: list[int]
    seq_len: int
    steps: int
    train_chunks: int
    eval_chunks: int
    recall_on: str
    """"held-out" when recall was measured on chunks not trained on, else "training"."""
    keep_ratio: dict[int, float]
    recall: dict[int, float]
    """Per layer: share of the oracle's kept (unforced) blocks that the predictor keeps at keep_ratio."""
    mass_recall: dict[int, float]
    mean_recall: float
    loss_curve: list[float]
    """Mean loss over layers at each step."""
    final_loss: dict[int, float]
    """Per layer: mean loss over the last 10% of steps."""
    params_initial: int
    params_final: int
    param_bytes: int
    widths: dict[int, dict[str, list[int]]]
    prune_events: list[dict[str, Any]] = field(default_factory=list)
    time_s: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("keep_ratio", "recall", "mass_recall", "final_loss", "widths"):
            d[key] = {str(k): v for k, v in d[key].items()}  # JSON object keys are strings
        return d

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return p

    def summary(self) -> str:
        per = ", ".join(f"{k}: {v:.3f}" for k, v in self.recall.items())
        return (
            f"recall ({self.recall_on}, keep ratio per layer) mean {self.mean_recall:.3f} [{per}]; "
            f"loss {self.loss_curve[0]:.4f} -> {self.loss_curve[-1]:.4f}; "
            f"{self.params_final / 1e6:.2f}M params (from {self.params_initial / 1e6:.2f}M); "
            f"{self.time_s.get('total', 0.0):.0f} s"
        )


def write_plots(
    pset: PredictorSet, sample: Sample, layers: list[int], report: CalibrationReport, out: Path
) -> list[str]:
    """Predicted-vs-oracle maps and the loss curve as PNGs; skipped when matplotlib is absent."""
    try:
        # matplotlib is optional: import it only when plots are asked for.
        from lemo.predictor.plot import plot_block_maps, plot_loss_curve
    except ImportError:
        return []
    device = next(pset.parameters()).device
    maps = {}
    with torch.no_grad():
        for i in layers:
            maps[i] = (pset[i](sample.x[i].to(device)).cpu(), sample.target[i].cpu())
    paths = [
        plot_block_maps(maps, out / "block_maps.png", keep_ratio=report.keep_ratio, recall=report.recall),
        plot_loss_curve(
            report.loss_curve, out / "loss.png", prune_steps=[e["step"] for e in report.prune_events]
        ),
    ]
    return [str(p) for p in paths]
