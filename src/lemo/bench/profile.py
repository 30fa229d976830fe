"""Where a training step's time goes: one step under `torch.profiler`, summarized from its Chrome trace.

The summary answers the questions of issue 20 item 3 in one table per (config, T):
- time per op family on the device (matmuls, attention, norms, elementwise, copies, lemo's own kernels, ...);
- how long the device sat idle inside the step, in how many gaps longer than `GAP_US`, and what the host was
  doing meanwhile (rows "idle <- <host event>": each gap blamed on the most specific host event covering it);
- host syncs (the host waiting for the device: stream/device/event synchronizes and blocking copies, and the
  ATen ops that read a device value on the host), which serialize the CPU's launch queue behind the GPU;
- what lemo's named ranges cost (the selector: "lemo::select"): the device time of the kernels launched inside
  them, found through the launch's correlation id (on a CPU trace, the self time of the ops inside them).

Parsing the exported trace rather than `prof.events()` keeps the summary a pure function of plain dicts, so it
is tested on CPU with hand-made events, and the trace can be kept and opened in Perfetto for a second look.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RANGE_PREFIX = "lemo::"  # lemo's own `record_function` ranges (lemo.sparsity.selection.PROFILE_RANGE, ...)
GAP_US = 50.0  # idle stretches shorter than this are launch latency between back-to-back kernels
DEVICE_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
SYNC_RUNTIME = re.compile(r"cuda(Stream|Device|Event)Synchronize|cudaMemcpy(?!Async)|cudaStreamWaitEvent")
SYNC_OPS = re.compile(r"aten::(_local_scalar_dense|item|nonzero|is_nonzero|equal)$")
# First match wins, so the specific families come before the broad ones. Names are CUDA kernel names (cuBLAS,
# flash/cutlass, Triton's mangled jit names, ATen's templated elementwise kernels) or, on CPU, ATen op names.
FAMILIES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        ("copy", r"memcpy|memset|copy_|CatArrayBatched|aten::(copy_|to|_to_copy|cat|index_copy)"),
        ("lemo-attention", r"_attn_(fwd|bwd)|query_rows"),
        ("lemo-scoring", r"block_score|_score|select_by|topk|sort"),
        ("lemo-loss", r"segmented|_ce_|cross_entropy|log_softmax|nll"),
        ("lemo-rows", r"_add_rows|index_add|index_select|gather|scatter|indexing_backward|aten::index"),
        ("liger", r"liger|_rms_norm_|_swiglu_|_rope_|_fused_linear"),
        ("attention", r"flash|fmha|attention|sdpa|_efficient_attention"),
        ("matmul", r"gemm|cublas|cutlass|sm90_xmma|nvjet|aten::(mm|bmm|addmm|matmul|linear)"),
        ("norm", r"norm|rsqrt"),
        ("reduce", r"reduce|sum|mean|max|amax"),
        ("elementwise", r"elementwise|vectorized|unrolled|aten::(mul|add|silu|neg|exp|div|sub|pow|where)"),
    )
)


def family(name: str) -> str:
    """The op family of a kernel or op name ("other" when no pattern matches)."""
    return next((fam for fam, pattern in FAMILIES if pattern.search(name)), "other")


def _union_us(intervals: list[tuple[float, float]]) -> tuple[float, list[tuple[float, float]]]:
    """(covered length, the [start, end) gaps between covered stretches) of [start, end) intervals."""
    covered, gaps, end = 0.0, [], None
    for s, e in sorted(intervals):
        if end is None or s > end:
            if end is not None:
                gaps.append((end, s))
            covered += e - s
            end = e
        elif e > end:
            covered += e - end
            end = e
    return covered, gaps


def summarize(events: Iterable[dict[str, Any]], device: bool = True) -> dict[str, Any]:
    """Summary of one profiled step from Chrome-trace events ({"name", "cat", "ts", "dur"}, microseconds).

    Args:
        device: summarize device events (a GPU trace); False summarizes CPU ops by their self time (a CPU trace).
    Returns:
        {"step_ms", "busy_ms", "idle_ms", "idle_share", "gaps", "gap_ms", "launches", "host_syncs",
         "families": {family: {"ms", "share", "count"}}, "ranges": {range: {"ms", "share", "count"}},
         "idle": {host event: {"ms", "share", "count"}}} where family and range shares are of the summed kernel
        (CPU: op self) time, a range's count is how often it was entered, and idle shares are of the long gaps.
    """
    events = [e for e in events if e.get("ph", "X") == "X" and "dur" in e]
    if device:
        spans = timed = [e for e in events if e.get("cat") in DEVICE_CATS]
    else:
        spans, timed = _self_times([e for e in events if e.get("cat") == "cpu_op"])
    busy, gaps = _union_us([(e["ts"], e["ts"] + e["dur"]) for e in spans])
    span = (max(e["ts"] + e["dur"] for e in spans) - min(e["ts"] for e in spans)) if spans else 0.0
    long_gaps = [(a, b) for a, b in gaps if b - a >= GAP_US]
    fam_us: dict[str, float] = defaultdict(float)
    fam_n: Counter[str] = Counter()
    for e in timed:
        f = family(e["name"]) if e.get("cat") == "kernel" or not device else "copy"
        fam_us[f] += e["dur"]
        fam_n[f] += 1
    syncs = sum(
        1
        for e in events
        if (e.get("cat") == "cuda_runtime" and SYNC_RUNTIME.search(e["name"]))
        or (e.get("cat") == "cpu_op" and SYNC_OPS.search(e["name"]))
    )
    total = sum(fam_us.values()) or 1.0
    ranges = _range_times(events, timed, device)
    return {
        "step_ms": span / 1e3,
        "busy_ms": busy / 1e3,
        "idle_ms": (span - busy) / 1e3,
        "idle_share": (span - busy) / span if span else 0.0,
        "gaps": len(long_gaps),
        "gap_ms": sum(b - a for a, b in long_gaps) / 1e3,
        "launches": sum(1 for e in timed if e.get("cat") == "kernel") if device else len(timed),
        "host_syncs": syncs,
        "families": {
            f: {"ms": us / 1e3, "share": us / total, "count": fam_n[f]}
            for f, us in sorted(fam_us.items(), key=lambda kv: -kv[1])
        },
        "ranges": {
            name: {"ms": us / 1e3, "share": us / total, "count": n} for name, (us, n) in ranges.items()
        },
        "idle": _idle_blame(events, long_gaps) if device else {},
    }


HOST_CATS = ("cpu_op", "cuda_runtime", "cuda_driver", "user_annotation", "python_function")
IDLE_TOP = 8  # the host events blamed for the most idle time, in the summary


def _idle_blame(events: list[dict[str, Any]], gaps: list[tuple[float, float]]) -> dict[str, dict[str, float]]:
    """{host event name: {"ms", "share", "count"}} for the `IDLE_TOP` names blamed for the most idle device time
    (share: of the long gaps' total). A gap is blamed on the shortest host event that covers at least half of
    it: the most specific thing the host was doing while the device waited (a synchronize, a host-side
    allocation, a Python-side loop inside one op or range); with none, on "(no host event)"."""
    host = sorted((e for e in events if e.get("cat") in HOST_CATS), key=lambda e: e["dur"])
    us: dict[str, float] = defaultdict(float)
    n: Counter[str] = Counter()
    for a, b in gaps:
        name = next(
            (e["name"] for e in host if min(b, e["ts"] + e["dur"]) - max(a, e["ts"]) >= (b - a) / 2),
            "(no host event)",
        )
        us[name] += b - a
        n[name] += 1
    total = sum(us.values()) or 1.0
    top = sorted(us.items(), key=lambda kv: -kv[1])[:IDLE_TOP]
    return {name: {"ms": t / 1e3, "share": t / total, "count": n[name]} for name, t in top}


def _range_times(
    events: list[dict[str, Any]], timed: list[dict[str, Any]], device: bool
) -> dict[str, tuple[float, int]]:
    """{range name: (microseconds of work inside it, times entered)} for lemo's named ranges. On a device trace
    the work is the kernels and copies launched inside the range (a launch's correlation id names its kernel), so
    it counts what the range costs the GPU, wherever the kernels ran; on a CPU trace, the ops' self times.
    A launch or op in nested ranges counts for the innermost."""
    spans = [e for e in events if e.get("cat") == "user_annotation" and e["name"].startswith(RANGE_PREFIX)]
    if not spans:
        return {}
    spans.sort(key=lambda e: e["dur"])  # innermost first

    def inside(e: dict[str, Any]) -> str | None:
        return next(
            (
                r["name"]
                for r in spans
                if r.get("tid", 0) == e.get("tid", 0) and r["ts"] <= e["ts"] < r["ts"] + r["dur"]
            ),
            None,
        )

    if device:
        launches = (e for e in events if e.get("cat") in ("cuda_runtime", "cuda_driver"))
        owner = {_corr(e): name for e in launches if (name := inside(e)) and _corr(e) is not None}
        work = ((owner.get(_corr(e)), e["dur"]) for e in timed)
    else:
        work = ((inside(e), e["dur"]) for e in timed)
    us: dict[str, float] = defaultdict(float)
    for name, dur in work:
        if name is not None:
            us[name] += dur
    entered = Counter(r["name"] for r in spans)
    return {name: (t, entered[name]) for name, t in us.items()}


def _corr(e: dict[str, Any]) -> Any:
    return (e.get("args") or {}).get("correlation")


def _self_times(ops: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(top-level CPU ops, every op with "dur" = its self time): a parent such as an autograd node or
    aten::linear keeps only the time its children do not account for, so no work is counted twice."""
    top, out, stack = [], [], []
    for e in sorted(ops, key=lambda e: (e.get("tid", 0), e["ts"], -e["dur"])):
        while stack and (
            stack[-1][0].get("tid", 0) != e.get("tid", 0)
            or stack[-1][0]["ts"] + stack[-1][0]["dur"] <= e["ts"]
        ):
            stack.pop()
        if stack:
            stack[-1][1]["dur"] -= e["dur"]
        else:
            top.append(e)
        own = {**e}
        out.append(own)
        stack.append((e, own))
    return top, out


def load_trace(path: str | Path) -> list[dict[str, Any]]:
    """The events of a trace written by `prof.export_chrome_trace`."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return data["traceEvents"] if isinstance(data, dict) else data


def rows(summary: dict[str, Any], **keys: Any) -> list[dict[str, Any]]:
    """CSV rows of a summary: one "step" row with the totals, then one per op family and one per lemo range
    (named "lemo::...", overlapping the families); `keys` go in every row."""
    head = {k: v for k, v in summary.items() if k not in ("families", "ranges", "idle")}
    out = [{**keys, "family": "step", **head}]
    for group, prefix in (("families", ""), ("ranges", ""), ("idle", "idle <- ")):
        for name, v in summary.get(group, {}).items():
            out.append(
                {**keys, "family": prefix + name, "ms": v["ms"], "share": v["share"], "count": v["count"]}
            )
    return out


def profile_step(step: Any, trace_path: str | Path, cuda: bool) -> dict[str, Any]:
    """Run `step()` once under the profiler, write its trace to `trace_path` and return its summary."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        step()
        if cuda:
            torch.cuda.synchronize()
    Path(trace_path).parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(trace_path))
    return summarize(load_trace(trace_path), device=cuda)
