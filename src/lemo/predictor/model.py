"""Learned block-score predictors (docs/design.md section 4; lemo-paper.md sections 3.5 and 3.7).

One `BlockPredictor` per sparse layer reads the layer's normed hidden states x [n, d] of one segment and
predicts the oracle's block score map S [nb, nb]; the oracle's own reduction (`lemo.ops.informativeness`)
then gives I_n:

    x [n, d] -> pad to nb*b rows and S*s columns (s = slice size, default the head size; S = ceil(d / s))
             -> e [S, nb, b*s]       each (head-sized slice, block) becomes one vector of b*s values
    q_hat = MLP_q(e) [S, nb, o]      b*s -> hidden -> mid -> o, ReLU between; weights shared across slices
    k_hat = MLP_k(e) [S, nb, o]
    map   = tril(sum_s q_hat_s k_hat_s^T) [nb, nb]

The artifact's shape is the default (hidden 128, mid b*s, o = s). The predictor reads a slice of the *hidden
state*, not of q/k, so it works for any head size and for GQA alike (it never sees the projections); when d is
not a multiple of s the last slice is zero-padded. Elastic pruning (lemo-paper.md section 3.6) shrinks
`hidden` and `mid` per tower; the widths are saved so that a pruned set reloads at its own shape.

`pool="max"` is our variant (not in the paper): each *token's* full hidden vector goes through
d -> hidden -> mid (ReLU), the block takes the elementwise max over its tokens, and a last linear layer maps
it to S pseudo-heads of o values, so q_hat, k_hat are [nb, S, o] and map = sum over pseudo-heads as above.
The oracle is a max over token pairs, which an MLP over the concatenated block can only mimic by learning
the same detector at every one of the b positions; the token tower learns it once (permutation-invariant
within a block, like the oracle's off-diagonal entries), which needs far less calibration data.

`PredictorSet` holds one predictor per sparse layer, is what `lemo.apply(model, cfg, predictors=...)` takes
(through `as_scorer()`), and saves to / loads from a directory: `predictors.safetensors` + `predictors.json`
(the predictor config, per-layer widths and the `ModelIdentity` of the calibrated model).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lemo._version import __version__
from lemo.config import PredictorConfig
from lemo.predictor.identity import ModelIdentity, validate_identity
from lemo.predictor.module import BlockPredictor, Tower
from lemo.predictor.timing import PredictorScorer

FORMAT = "lemo-predictors"
FORMAT_VERSION = 1
WEIGHTS_FILE = "predictors.safetensors"
CONFIG_FILE = "predictors.json"
REPORT_FILE = "calibration.json"
__all__ = ["BlockPredictor", "PredictorScorer", "PredictorSet", "load_predictor_set"]


class PredictorSet(nn.Module):
    """One `BlockPredictor` per sparse layer, plus the identity of the model they were calibrated on."""

    def __init__(
        self,
        config: PredictorConfig,
        layers: list[int],
        identity: ModelIdentity | None = None,
        widths: dict[int, dict[str, tuple[int, int]]] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not layers:
            raise ValueError(
                "a PredictorSet needs at least one layer; check sparse_layers (it resolved to none)."
            )
        self.config = config
        self.identity = identity
        # Calibration settings worth keeping with the weights (seq_len, steps, keep ratios ...).
        self.meta: dict[str, Any] = dict(meta or {})
        # The CalibrationReport of the run that produced this set, when it came from `train_predictors`.
        self.report: Any = None
        widths = widths or {}
        self.predictors = nn.ModuleDict(
            {str(i): BlockPredictor(config, widths.get(i)) for i in sorted(layers)}
        )

    @property
    def layers(self) -> list[int]:
        return [int(k) for k in self.predictors]

    def predictor(self, layer: int) -> BlockPredictor:
        key = str(layer)
        if key not in self.predictors:
            raise KeyError(
                f"no predictor for layer {layer}; these predictors cover layers {self.layers}. Use "
                f"SparsityConfig(sparse_layers={self.layers}) or recalibrate with the sparse layers you want."
            )
        return self.predictors[key]  # type: ignore[return-value]

    def __getitem__(self, layer: int) -> BlockPredictor:
        return self.predictor(layer)

    def as_scorer(self) -> PredictorScorer:
        """The `BlockScorer` that `lemo.apply(model, cfg, predictors=self)` uses (one per set, so that
        `timings()` reports the calls made through `lemo.apply`)."""
        scorer = self.__dict__.get("_scorer")
        if scorer is None:
            scorer = PredictorScorer(self)
            self.__dict__["_scorer"] = scorer  # not a submodule / parameter: bypass nn.Module.__setattr__
        return scorer

    def timings(self) -> dict[str, float]:
        """Time and memory of the predictor calls made through `as_scorer()` since the last `reset_timings()`:
        {"calls", "seconds", "ms_per_call", "param_bytes"} (what `lemo finetune` logs)."""
        return self.as_scorer().timings()

    def reset_timings(self) -> None:
        self.as_scorer().reset()

    def activation_bytes(self, seq_len: int) -> int:
        """Transient memory of one predictor call at `seq_len` tokens (no grad): the largest live tensors."""
        c = self.config
        nb = max(1, math.ceil(seq_len / c.block_size))
        el = next(self.parameters()).element_size()
        widest = max(max(w["q"] + w["k"]) for w in self.widths().values())
        rows = c.n_slices * nb if c.pool == "concat" else nb * c.block_size  # vectors one tower processes
        tower = rows * (c.in_dim + 2 * widest) * el  # its input, one pre-activation and its ReLU
        return int(tower + 2 * nb * c.n_slices * c.out * el + 2 * nb * nb * 4)  # + q_hat, k_hat, fp32 map

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def nbytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.parameters())

    def widths(self) -> dict[int, dict[str, tuple[int, int]]]:
        return {i: self.predictor(i).widths for i in self.layers}

    def track_deaths(self, on: bool) -> None:
        for m in self.modules():
            if isinstance(m, Tower):
                m.track_deaths = on

    def prune(self, threshold: float, min_units: int = 8) -> dict[str, list[tuple[int, torch.Tensor]]]:
        """Elastic pruning of every tower (see `Tower.prune`); returns slicings keyed by parameter name."""
        changed: dict[str, list[tuple[int, torch.Tensor]]] = {}
        for name, m in self.named_modules():
            if isinstance(m, Tower):
                for pname, sl in m.prune(threshold, min_units).items():
                    changed[f"{name}.{pname}"] = sl
        return changed

    # ---------------------------------------------------------------- save / load

    def save(self, directory: str | Path) -> Path:
        """Write `predictors.safetensors` + `predictors.json` (+ `calibration.json` with a report)."""
        from safetensors.torch import save_file  # imported only when saving

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {name: p.detach().contiguous().cpu() for name, p in self.state_dict().items()}
        save_file(
            tensors, str(out / WEIGHTS_FILE), metadata={"format": FORMAT, "version": str(FORMAT_VERSION)}
        )
        doc = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "lemo_version": __version__,
            "model": self.identity.to_dict() if self.identity is not None else None,
            "predictor": self.config.to_dict(),
            "layers": {str(i): {k: list(v) for k, v in w.items()} for i, w in self.widths().items()},
            "dtype": str(next(self.parameters()).dtype).removeprefix("torch."),
            "num_parameters": self.num_parameters(),
            "meta": self.meta,
        }
        (out / CONFIG_FILE).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        if self.report is not None and hasattr(self.report, "to_dict"):
            (out / REPORT_FILE).write_text(
                json.dumps(self.report.to_dict(), indent=2) + "\n", encoding="utf-8"
            )
        return out


def load_predictor_set(
    directory: str | Path,
    model: ModelIdentity | None = None,
    *,
    strict: bool = True,
    device: str | torch.device | None = None,
) -> PredictorSet:
    """Load a predictor set saved by `PredictorSet.save` (or `lemo calibrate`).

    Args:
        directory: the folder holding predictors.json and predictors.safetensors.
        model: the identity of the model they will serve; when given, predictors calibrated for another model
            are refused with a ValueError naming the differences. (`lemo.load_predictors(dir, model)` accepts
            the HF model itself and computes its identity.)
        strict: when False, a weight-fingerprint difference alone is accepted (shape differences never are).
        device: where to put the weights (default CPU; the scorer moves them to the model's device when used).
    """
    from safetensors.torch import load_file  # imported only when loading

    d = Path(directory)
    cfg_path, w_path = d / CONFIG_FILE, d / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise FileNotFoundError(
            f"{d} does not hold a predictor set ({CONFIG_FILE} and {WEIGHTS_FILE} expected); "
            "create one with `lemo calibrate --output DIR` or lemo.calibrate(model, texts).save(DIR)."
        )
    doc = json.loads(cfg_path.read_text(encoding="utf-8"))
    if doc.get("format") != FORMAT:
        raise ValueError(f"{cfg_path} is not a lemo predictor config (format {doc.get('format')!r}).")
    if int(doc.get("version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{cfg_path} has format version {doc['version']}, newer than this lemo reads ({FORMAT_VERSION}); "
            "upgrade lemo (pip install -U lemo)."
        )
    identity = ModelIdentity.from_dict(doc["model"]) if doc.get("model") else None
    if identity is not None:
        validate_identity(identity)
    if model is not None:
        if identity is None:
            raise ValueError(
                f"{d} records no model identity, so it cannot be checked against this model; recalibrate."
            )
        identity.check(model, source=f"the predictors in {d}", strict=strict)
    config = PredictorConfig.from_dict(doc["predictor"])
    widths = {int(i): {k: tuple(v) for k, v in w.items()} for i, w in doc["layers"].items()}
    pset = PredictorSet(config, sorted(widths), identity, widths, doc.get("meta"))
    state = load_file(str(w_path))
    dtype = next(iter(state.values())).dtype if state else torch.float32
    pset.to(dtype)
    try:
        pset.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(
            f"{w_path} does not match {cfg_path} ({str(err).splitlines()[-1].strip()}); the two files "
            "come from different runs: save them together again (PredictorSet.save) or recalibrate."
        ) from None
    if device is not None:
        pset.to(device)
    return pset
