"""Calibration's training samples: what calibration needs from a model (`CalibrationModel`), and one chunk's
normed layer inputs with their oracle block maps, collected once from the frozen model and cached on disk by
content (model identity, layers, block size, token ids), because the frozen forward costs far more than a
predictor step."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from lemo.config import PredictorTrainingConfig
from lemo.predictor.identity import ModelIdentity
from lemo.sparsity.budget import DenseModel
from lemo.sparsity.scoring import oracle_map


class CalibrationModel(DenseModel, Protocol):
    """What calibration needs from a model: the budget search's `DenseModel` (layer parts for the oracle's q/k
    projections, normed layer inputs, RoPE tables) plus its device and identity. Implemented for HF models in
    lemo.integrations.transformers.calibration."""

    device: torch.device

    def identity(self) -> ModelIdentity:
        """Shape and weight fingerprint of the model (recorded with the predictors)."""


@dataclass
class Sample:
    """One chunk's per-layer normed inputs x [T, d] and oracle maps [nb, nb]."""

    x: dict[int, torch.Tensor]
    target: dict[int, torch.Tensor]


def _sample_path(
    cache_dir: str | Path, identity: ModelIdentity, layers: Sequence[int], b: int, ids: torch.Tensor
) -> Path:
    h = hashlib.sha256()
    h.update(json.dumps(identity.to_dict(), sort_keys=True).encode())
    h.update(json.dumps([list(layers), b]).encode())
    h.update(ids.detach().to(torch.int64).cpu().numpy().tobytes())
    return Path(cache_dir) / f"sample-{h.hexdigest()[:32]}.pt"


def collect_sample(
    model: CalibrationModel,
    input_ids: torch.Tensor,
    layers: Sequence[int],
    block_size: int,
    store: dict[str, Any],
    cache_dir: str | Path | None = None,
) -> Sample:
    """Run the frozen model once on input_ids [T] and build the sample (stored on `store['device']`).

    With `cache_dir`, a sample saved there earlier for the same model, layers, block size and tokens is
    loaded instead, and a new one is saved.
    """
    path = None
    if cache_dir is not None:
        path = _sample_path(cache_dir, model.identity(), layers, block_size, input_ids)
        if path.is_file():
            saved = torch.load(path, map_location="cpu")
            return Sample(
                {i: saved["x"][i].to(store["device"], store["dtype"]) for i in layers},
                {i: saved["target"][i].to(store["device"]) for i in layers},
            )
    sample = _collect(model, input_ids, layers, block_size, store)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"x": sample.x, "target": sample.target}, tmp)
        tmp.replace(path)  # atomic: a killed run never leaves a truncated sample behind
    return sample


def _collect(
    model: CalibrationModel,
    input_ids: torch.Tensor,
    layers: Sequence[int],
    block_size: int,
    store: dict[str, Any],
) -> Sample:
    with torch.no_grad():
        xs = model.normed_inputs(input_ids, layers)  # {layer: [T, d]}
        targets = {i: oracle_map(model.layer_parts(i), xs[i], block_size).to(store["device"]) for i in layers}
        x_store = {i: xs[i].to(store["device"], store["dtype"]) for i in layers}
    return Sample(x_store, targets)


class SampleCache:
    """The samples of the training chunks: collected lazily, kept (on CPU) while they fit in cache_gb."""

    def __init__(
        self,
        model: CalibrationModel,
        chunks: list[torch.Tensor],
        layers: list[int],
        block_size: int,
        cfg: PredictorTrainingConfig,
    ):
        self.model = model
        self.chunks = chunks  # the training chunks, token ids [T] each
        self.layers = layers
        self.block_size = block_size
        self.cfg = cfg
        self.store = {"device": torch.device("cpu"), "dtype": getattr(torch, cfg.cache_dtype)}
        self.cache: dict[int, Sample] = {}
        self.nbytes = 0
        self.collect_s = 0.0  # seconds spent collecting (in `sample`)

    def collect(self, chunk: torch.Tensor) -> Sample:
        """The sample of any chunk, collected now (not cached in memory, not timed)."""
        return collect_sample(self.model, chunk, self.layers, self.block_size, self.store, self.cfg.cache_dir)

    def sample(self, j: int) -> Sample:
        """The sample of chunk `j`."""
        if j in self.cache:
            return self.cache[j]
        t0 = time.perf_counter()
        s = self.collect(self.chunks[j])
        self.collect_s += time.perf_counter() - t0
        nbytes = sum(t.numel() * t.element_size() for t in [*s.x.values(), *s.target.values()])
        if self.nbytes + nbytes <= self.cfg.cache_gb * 1024**3:
            self.cache[j] = s
            self.nbytes += nbytes
        return s
