"""Training progress on the terminal (`Progress`) and on disk (`MetricsWriter`, one JSON object per line).

The bar shows what a long-context run is judged by: loss, tokens/s, peak memory and the kept fraction of
token blocks (over all layers, and over the sparse layers alone); tqdm adds the ETA. `Progress.update` returns
the same numbers as a dict, ready for `MetricsWriter.write`, so the terminal and metrics.jsonl never disagree.
"""

from __future__ import annotations

import json
import math
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from tqdm.auto import tqdm

_GB = 1024**3


def peak_memory_bytes(device: torch.device | str | None = None) -> int:
    """Peak allocated CUDA memory on a CUDA device, else the peak resident set size of this process."""
    dev = torch.device(device) if device is not None else None
    if dev is not None and dev.type == "cuda":
        return int(torch.cuda.max_memory_allocated(dev))
    try:
        import resource
    except ImportError:  # Windows has no resource module
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, Linux KiB


def _si(x: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


class _ClosedOnExit(AbstractContextManager):
    """`with ... as x:` closes x when the block ends, as a file does (`__enter__` returns x itself)."""

    def close(self) -> None:
        raise NotImplementedError

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Progress(_ClosedOnExit):
    """A tqdm bar over optimizer steps; its postfix reads
    `loss=… tok/s=… mem=…GB kept=… of layer-tokens (sparse layers …)`.

    Example::

        with Progress(total=steps, initial=start_step, device=model.device) as bar:
            for step in range(start_step, steps):
                ...
                metrics = bar.update(loss=loss.item(), tokens=batch["input_ids"].numel(), kept=kept)
                writer.write(metrics)
    """

    def __init__(
        self,
        total: int,
        initial: int = 0,
        desc: str = "train",
        device: torch.device | str | None = None,
        disable: bool = False,
        smoothing: float = 0.3,
    ) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.step = initial
        self.total = total
        self._initial = initial
        self._start = time.perf_counter()
        self.smoothing = smoothing
        self._tok_per_s: float | None = None
        self._last = time.perf_counter()
        # Redirected output (a log file, a job scheduler) gets a line every 30 s instead of a stream of \r.
        interval = 0.1 if sys.stderr.isatty() else 30.0
        self._bar = tqdm(
            total=total,
            initial=initial,
            desc=desc,
            unit="step",
            dynamic_ncols=True,
            mininterval=interval,
            disable=disable,
        )

    def update(
        self,
        n: int = 1,
        *,
        loss: float | None = None,
        tokens: int | None = None,
        kept: float | None = None,
        kept_sparse: float | None = None,
    ) -> dict[str, Any]:
        """Advance by `n` steps that processed `tokens` tokens; returns the metrics shown.

        `kept` is the kept fraction of layer-tokens over all layers (dense layers count as 1), `kept_sparse` the
        sparse layers' own, near the keep ratio: the bar shows both, so 0.80 beside a ratio of 0.6 is explained.
        """
        now = time.perf_counter()
        elapsed, self._last = now - self._last, now
        self.step += n
        if tokens is not None and elapsed > 0:
            rate = tokens / elapsed
            # Exponential moving average, as tqdm smooths its own rate: single steps are noisy.
            prev = self._tok_per_s
            self._tok_per_s = rate if prev is None else self.smoothing * rate + (1 - self.smoothing) * prev
        metrics: dict[str, Any] = {"step": self.step}
        if loss is not None:
            metrics["loss"] = float(loss)
        if self._tok_per_s is not None:
            metrics["tokens_per_s"] = self._tok_per_s
        metrics["peak_mem_gb"] = peak_memory_bytes(self.device) / _GB
        if kept is not None:
            metrics["kept"] = float(kept)
        if kept_sparse is not None:
            metrics["kept_sparse"] = float(kept_sparse)
        # ETA as tqdm computes it without smoothing: steps done this session over the time they took.
        metrics["elapsed_s"] = now - self._start
        done = self.step - self._initial
        if done > 0 and metrics["elapsed_s"] > 0:
            metrics["eta_s"] = max(self.total - self.step, 0) * metrics["elapsed_s"] / done
        self._bar.update(n)
        self._bar.set_postfix_str(self._postfix(metrics), refresh=False)
        return metrics

    @staticmethod
    def _postfix(m: dict[str, Any]) -> str:
        parts = []
        if "loss" in m:
            parts.append(f"loss={m['loss']:.4f}")
        if "tokens_per_s" in m:
            parts.append(f"tok/s={_si(m['tokens_per_s'])}")
        parts.append(f"mem={m['peak_mem_gb']:.2f}GB")
        if "kept" in m:
            parts.append(f"kept={m['kept']:.2f} of layer-tokens")
        if "kept_sparse" in m:
            parts.append(f"(sparse layers {m['kept_sparse']:.2f})")
        return " ".join(parts)

    def write(self, message: str) -> None:
        """Print a line above the bar without breaking it."""
        self._bar.write(message)

    def close(self) -> None:
        self._bar.close()


class MetricsWriter(_ClosedOnExit):
    """Append one JSON object per line to a metrics.jsonl file, flushed line by line.

    The file is opened in append mode, so a resumed run continues it. With `resume_step`, records of steps
    after it are dropped first: the resumed run redoes those steps and would otherwise log them twice.
    Non-finite floats (a NaN loss) are written as null so every line stays strict JSON.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None and self.path.exists():
            self._truncate_after(resume_step)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if self._fh.tell() > 0 and not self._ends_with_newline():
            self._fh.write("\n")  # a run killed mid-line must not glue its half line to the next record

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(_finite(record), default=_json_default, allow_nan=False)
        self._fh.write(line + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, 2)
            return fh.read(1) == b"\n"

    def _truncate_after(self, step: int) -> None:
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a half-written line from a killed run
            if not (
                isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] > step
            ):
                kept.append(line + "\n")
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        tmp.replace(self.path)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return _finite(obj.item())
    return obj


def _json_default(obj: Any) -> Any:
    return str(obj)  # Paths, dtypes, devices: readable rather than a crash in the middle of a run
