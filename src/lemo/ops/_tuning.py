"""How lemo's Triton kernels are autotuned: a cheaper benchmark for long launches, results kept on disk.

Triton's default benchmark runs every candidate configuration about seven times (one warm-up, five to
estimate, then as many repeats as fit in 100 ms). At 256K tokens one attention launch takes about a second, so
tuning the three attention kernels cost minutes of the first step. A launch that long is its own average: one
timed run after the compiling run ranks the candidates as well, at two runs instead of seven. Short launches,
where noise matters, keep Triton's benchmark.

With `cache_results`, Triton stores the winner under its cache directory, keyed on the kernel's source and
the tuning key, so a resumed or repeated run at the same length class does not tune again.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
import triton

# Launches at least this long are timed once; below it Triton's repeated benchmark runs.
LONG_LAUNCH_MS = 20.0


def _cuda_ms(fn: Callable[[], None]) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end)


def quick_bench(
    fn: Callable[[], None],
    quantiles: Sequence[float] | None = None,
    *,
    long_ms: float = LONG_LAUNCH_MS,
    time_once: Callable[[Callable[[], None]], float] = _cuda_ms,
    repeated: Callable[..., float | list[float]] | None = None,
) -> float | list[float]:
    """Milliseconds of one launch of `fn` (a list, one per quantile, when `quantiles` is given), as Triton's
    autotuner asks of `do_bench`. The first call compiles the configuration and is not timed."""
    fn()
    ms = time_once(fn)
    if ms < long_ms:
        return (repeated or triton.testing.do_bench)(fn, quantiles=quantiles)
    return [ms] * len(quantiles) if quantiles else ms


def autotune(configs: list, key: list[str]) -> Callable:
    """`triton.autotune` with `quick_bench` and on-disk results, where this Triton version has them."""
    accepted = inspect.signature(triton.autotune).parameters
    extra = {
        name: value
        for name, value in (("do_bench", quick_bench), ("cache_results", True))
        if name in accepted
    }
    return triton.autotune(configs=configs, key=key, **extra)
