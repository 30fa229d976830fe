"""`PredictorScorer`: the predictors as lemo's block scorer, timing each call (an optional wrapper: the time and
memory it reports are what `lemo finetune` logs as predictor_ms, so users can check the predictors stay cheap)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from lemo.sparsity.parts import LayerParts

if TYPE_CHECKING:  # the set builds its scorer; only the annotation needs the class
    from lemo.predictor.model import PredictorSet


class PredictorScorer:
    """A `BlockScorer` backed by a `PredictorSet`; also accumulates the predictors' time per call.

    Time is measured with CUDA events on GPU (no host synchronisation in the hot path; the events are read
    only when `timings()` is called) and with a wall clock on CPU.
    """

    def __init__(self, predictors: PredictorSet) -> None:
        self.predictors = predictors
        self.reset()

    def reset(self) -> None:
        self._calls = 0
        self._cpu_s = 0.0
        self._events: list[tuple[Any, Any]] = []

    def __call__(self, parts: LayerParts, x: torch.Tensor, block_size: int) -> torch.Tensor:
        pred = self.predictors.predictor(parts.index)
        if block_size != pred.block_size:
            raise ValueError(
                f"the predictors were calibrated with block_size={pred.block_size}, but SparsityConfig has "
                f"block_size={block_size}; use SparsityConfig(block_size={pred.block_size}) (--block-size "
                f"{pred.block_size}) or recalibrate with --block-size {block_size}."
            )
        weight = pred.q.l1.weight
        if weight.device != x.device:
            # Predictors follow the model's device on first use (saved sets load on CPU).
            self.predictors.to(x.device)
        cuda = x.device.type == "cuda"
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        else:
            t0 = time.perf_counter()
        with torch.no_grad():
            out = pred.scores(x)  # [nb]
        if cuda:
            end.record()
            self._events.append((start, end))
        else:
            self._cpu_s += time.perf_counter() - t0
        self._calls += 1
        return out

    def timings(self) -> dict[str, float]:
        """{"calls", "seconds", "ms_per_call", "param_bytes"} since the last `reset()`."""
        seconds = self._cpu_s + sum(s.elapsed_time(e) for s, e in self._events) / 1000.0
        return {
            "calls": float(self._calls),
            "seconds": seconds,
            "ms_per_call": 1000.0 * seconds / self._calls if self._calls else 0.0,
            "param_bytes": float(self.predictors.nbytes()),
        }
