"""The step profiler's summary (lemo.bench.profile): a pure function of trace events, checked on hand-made events,
and one real profiled step of the tiny shape on CPU through the benchmark script."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from lemo.bench.profile import family, rows, summarize

ROOT = Path(__file__).resolve().parents[1]


def _k(name, ts, dur, cat="kernel"):
    return {"ph": "X", "name": name, "cat": cat, "ts": ts, "dur": dur}


def test_families_name_the_kernels_users_see():
    assert family("sm90_xmma_gemm_bf16bf16_bf16f32") == "matmul"
    assert family("flash_fwd_kernel") == "attention"
    assert family("_attn_fwd_kernel") == "lemo-attention"
    assert family("_add_rows_kernel") == "lemo-rows"
    assert family("_rms_norm_forward_kernel") == "liger"
    assert family("Memcpy DtoH (Device -> Pinned)") == "copy"
    assert family("void at::native::vectorized_elementwise_kernel<4, ...>") == "elementwise"
    assert family("some_new_kernel") == "other"


def test_busy_idle_gaps_and_shares_of_a_device_trace():
    events = [
        _k("ampere_gemm", 0, 100),
        _k("flash_fwd_kernel", 50, 100),  # overlaps the gemm (another stream): busy counts the union once
        _k("vectorized_elementwise_kernel", 160, 10),  # a 10 us gap: launch latency, not an idle gap
        _k("Memcpy HtoD", 300, 100, cat="gpu_memcpy"),  # a 130 us gap before it
        {"ph": "X", "name": "cudaStreamSynchronize", "cat": "cuda_runtime", "ts": 10, "dur": 5},
        {"ph": "X", "name": "cudaMemcpyAsync", "cat": "cuda_runtime", "ts": 12, "dur": 5},  # async: no sync
        {"ph": "X", "name": "aten::item", "cat": "cpu_op", "ts": 20, "dur": 5},
        {"ph": "i", "name": "marker", "cat": "kernel", "ts": 0},  # instant events carry no time
    ]
    s = summarize(events)
    assert s["step_ms"] == pytest.approx(0.4)
    assert s["busy_ms"] == pytest.approx(0.26)  # [0, 150) + [160, 170) + [300, 400)
    assert s["idle_ms"] == pytest.approx(0.14)
    assert s["gaps"] == 1 and s["gap_ms"] == pytest.approx(0.13)
    assert s["launches"] == 3 and s["host_syncs"] == 2
    fams = s["families"]
    assert fams["matmul"]["ms"] == pytest.approx(0.1) and fams["copy"]["count"] == 1
    assert sum(v["share"] for v in fams.values()) == pytest.approx(1.0)


def test_cpu_trace_counts_each_ops_self_time_once():
    events = [
        {"ph": "X", "name": "autograd::engine::evaluate_function: X", "cat": "cpu_op", "ts": 0, "dur": 100},
        {"ph": "X", "name": "aten::linear", "cat": "cpu_op", "ts": 0, "dur": 90},  # a parent: its self time
        {"ph": "X", "name": "aten::addmm", "cat": "cpu_op", "ts": 10, "dur": 80},
        {"ph": "X", "name": "aten::mul", "cat": "cpu_op", "ts": 100, "dur": 20},
        {"ph": "X", "name": "aten::mul", "cat": "cpu_op", "ts": 5, "dur": 1, "tid": 2},  # another thread
    ]
    s = summarize(events, device=False)
    assert s["launches"] == 5 and s["busy_ms"] == pytest.approx(0.12)
    assert s["families"]["matmul"]["ms"] == pytest.approx(0.09)  # addmm's 80 us and linear's own 10
    assert s["families"]["other"]["ms"] == pytest.approx(0.01)  # the autograd node's own 10 us
    assert s["families"]["elementwise"]["ms"] == pytest.approx(0.021)


def _launch(ts, corr, tid=1):
    return {"ph": "X", "name": "cudaLaunchKernel", "cat": "cuda_runtime", "ts": ts, "dur": 2, "tid": tid,
            "args": {"correlation": corr}}  # fmt: skip


def test_idle_gaps_are_blamed_on_the_most_specific_host_event():
    """Each long gap goes to the shortest host event covering at least half of it: what the host was doing while
    the device waited; the rows name them after the families and ranges."""
    host = [
        {
            "ph": "X",
            "name": "CheckpointFunctionBackward",
            "cat": "cpu_op",
            "ts": 0,
            "dur": 1000,
        },  # covers all
        {"ph": "X", "name": "cudaHostAlloc", "cat": "cuda_runtime", "ts": 110, "dur": 180},  # most of gap 1
        {
            "ph": "X",
            "name": "cudaLaunchKernel",
            "cat": "cuda_runtime",
            "ts": 295,
            "dur": 3,
        },  # too little of it
    ]
    events = [
        _k("ampere_gemm", 0, 100),
        _k("flash_fwd_kernel", 300, 100),  # gap 1: [100, 300)
        _k("ampere_gemm", 500, 100),  # gap 2: [400, 500), inside the checkpoint's backward only
        _k("ampere_gemm", 900, 50),  # gap 3: [600, 900), inside the checkpoint backward too
        *host,
    ]
    s = summarize(events)
    assert s["gaps"] == 3
    idle = s["idle"]
    assert idle["cudaHostAlloc"]["ms"] == pytest.approx(0.2) and idle["cudaHostAlloc"]["count"] == 1
    assert idle["CheckpointFunctionBackward"]["ms"] == pytest.approx(0.4)
    assert idle["CheckpointFunctionBackward"]["count"] == 2
    assert sum(v["share"] for v in idle.values()) == pytest.approx(1.0)
    bare = summarize([_k("ampere_gemm", 0, 100), _k("ampere_gemm", 300, 100)])
    assert bare["idle"] == {"(no host event)": {"ms": pytest.approx(0.2), "share": 1.0, "count": 1}}
    names = [r["family"] for r in rows(s, config="x")]
    assert "idle <- cudaHostAlloc" in names and names[0] == "step"


def test_a_lemo_range_costs_the_kernels_launched_inside_it():
    events = [
        {"ph": "X", "name": "lemo::select", "cat": "user_annotation", "ts": 100, "dur": 50, "tid": 1},
        {"ph": "X", "name": "lemo::select", "cat": "user_annotation", "ts": 500, "dur": 50, "tid": 1},
        {"ph": "X", "name": "other::range", "cat": "user_annotation", "ts": 0, "dur": 1000, "tid": 1},
        _launch(10, 1),  # before the range: the gemm is not the selector's
        _launch(110, 2),  # inside the first entry
        _launch(510, 3),  # inside the second
        _launch(520, 4, tid=2),  # another thread at the same time: not inside
        {**_k("ampere_gemm", 20, 100), "args": {"correlation": 1}},
        {**_k("topk_kernel", 300, 30), "args": {"correlation": 2}},  # runs after the range's host side ended
        {**_k("Memcpy DtoH", 600, 10, cat="gpu_memcpy"), "args": {"correlation": 3}},
        {**_k("elementwise_kernel", 700, 60), "args": {"correlation": 4}},
    ]
    s = summarize(events)
    sel = s["ranges"]["lemo::select"]
    assert sel["ms"] == pytest.approx(0.04) and sel["count"] == 2  # topk 30 + copy 10
    assert sel["share"] == pytest.approx(40 / 200)
    assert set(s["ranges"]) == {"lemo::select"}  # only lemo's ranges are reported


def test_a_lemo_range_on_a_cpu_trace_counts_self_times():
    events = [
        {"ph": "X", "name": "lemo::select", "cat": "user_annotation", "ts": 0, "dur": 50},
        {"ph": "X", "name": "aten::topk", "cat": "cpu_op", "ts": 10, "dur": 20},
        {"ph": "X", "name": "aten::mm", "cat": "cpu_op", "ts": 60, "dur": 40},
    ]
    s = summarize(events, device=False)
    assert s["ranges"]["lemo::select"]["ms"] == pytest.approx(0.02)
    assert summarize(events[1:], device=False)["ranges"] == {}


def test_profile_script_writes_step_and_family_rows(tmp_path):
    spec = importlib.util.spec_from_file_location("profile_step", ROOT / "benchmarks/e2e/profile_step.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "profile.csv"
    argv = ["--shape", "tiny", "--lengths", "256", "--configs", "exact", "lemo-random+gc"]
    assert script.main([*argv, "--out", str(out), "--traces", str(tmp_path / "traces")]) == 0
    with out.open(newline="") as fh:
        got = list(csv.DictReader(fh))
    steps = [r for r in got if r["family"] == "step"]
    assert [r["config"] for r in steps] == ["exact", "lemo-random+gc"]
    assert all(float(r["step_ms"]) > 0 and int(r["launches"]) > 0 for r in steps)
    assert any(r["family"] == "matmul" and float(r["ms"]) > 0 for r in got)
    # The selector's cost comes as its own row, for the sparse config only.
    select = [r for r in got if r["family"] == "lemo::select"]
    assert [r["config"] for r in select] == ["lemo-random+gc"] and float(select[0]["ms"]) > 0
    assert len(list((tmp_path / "traces").glob("tiny_*_256.json"))) == 2


def test_profile_script_profiles_an_offload_step_after_a_few_layer_warm_up(tmp_path):
    # 128K with offload: the warm-up through two layers is what lets the profiled step fit one device call.
    spec = importlib.util.spec_from_file_location("profile_step", ROOT / "benchmarks/e2e/profile_step.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "profile.csv"
    argv = [
        "--shape",
        "tiny",
        "--lengths",
        "256",
        "--configs",
        "default+offload+tiled-attn",
        "--tile-tokens",
        "64",
    ]
    argv += ["--warmup-layers", "few", "--out", str(out), "--traces", str(tmp_path / "traces")]
    assert script.main(argv) == 0
    with out.open(newline="") as fh:
        got = list(csv.DictReader(fh))
    step = [r for r in got if r["family"] == "step"]
    assert len(step) == 1 and float(step[0]["step_ms"]) > 0
    assert any(r["family"] == "lemo::select" and float(r["ms"]) > 0 for r in got)
