"""The autotuning benchmark: a long launch is timed once after its compiling run; a short one is repeated."""

import inspect

import triton

from lemo.ops import _tuning


def _counting():
    calls = []
    return calls, lambda: calls.append(1)


def test_long_launch_runs_twice_and_reports_its_time():
    calls, fn = _counting()

    def time_once(f):
        f()
        return 900.0

    def repeated(*a, **k):
        raise AssertionError("a long launch must not take the repeated benchmark")

    got = _tuning.quick_bench(fn, (0.5, 0.2, 0.8), time_once=time_once, repeated=repeated)
    assert got == [900.0, 900.0, 900.0]
    assert len(calls) == 2  # the compiling run, then the timed one
    assert _tuning.quick_bench(fn, None, time_once=time_once, repeated=repeated) == 900.0


def test_short_launch_takes_the_repeated_benchmark():
    _, fn = _counting()
    seen = {}

    def repeated(f, quantiles=None):
        seen["quantiles"] = quantiles
        return [1.0, 0.9, 1.1]

    got = _tuning.quick_bench(fn, (0.5, 0.2, 0.8), time_once=lambda f: 0.5, repeated=repeated)
    assert got == [1.0, 0.9, 1.1] and seen["quantiles"] == (0.5, 0.2, 0.8)


def test_attention_kernels_are_tuned_with_it():
    from lemo.ops.sparse_attention import triton as kernels

    accepted = inspect.signature(triton.autotune).parameters
    for tuner in kernels._TUNED.values():
        if "do_bench" in accepted:
            assert tuner.do_bench is _tuning.quick_bench
        if "cache_results" in accepted:
            assert tuner.cache_results
