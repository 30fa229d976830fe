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

    if "do_bench" in inspect.signature(triton.autotune).parameters:
        assert all(tuner.do_bench is _tuning.quick_bench for tuner in kernels._TUNED.values())


def test_autotune_asks_for_the_quick_bench_and_the_disk_cache_where_triton_has_them(monkeypatch):
    # (Triton turns its disk cache off under the interpreter, so the request is checked, not the tuner's flag.)
    seen = {}

    def recent(configs, key, do_bench=None, cache_results=False):
        seen.update(do_bench=do_bench, cache_results=cache_results)
        return lambda fn: fn

    monkeypatch.setattr(_tuning.triton, "autotune", recent)
    _tuning.autotune([], ["HEAD_DIM"])
    assert seen == {"do_bench": _tuning.quick_bench, "cache_results": True}

    def tuner(fn):
        return fn

    def old(configs, key):  # an older Triton: either keyword would be a TypeError
        return tuner

    monkeypatch.setattr(_tuning.triton, "autotune", old)
    assert _tuning.autotune([], ["HEAD_DIM"]) is tuner
