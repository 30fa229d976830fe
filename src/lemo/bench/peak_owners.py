"""What holds the GPU memory at a step's peak: the allocations live at that moment, grouped by the code that made
them, from a CUDA caching-allocator history (`torch.cuda.memory._record_memory_history`).

It answers the question `lemo plan`'s validation leaves open when a measured peak differs from the predicted one
(docs/plan.md, Validation): which tensors the plan does not account for. The history is replayed event by event
(an allocation adds its block, a requested free removes it) and the live set at the largest total is grouped by
its innermost frame in lemo, transformers, PEFT or Liger. Only what the step allocates while recording is seen:
the weights and anything older are not in the history, so the totals are the step's own transient memory.

A pure function of the snapshot's plain dicts, so it is tested on a CPU with hand-made events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

# Frames from these packages name an owner; the first such frame from the innermost outwards wins.
OWNER_PACKAGES = ("/lemo/", "/transformers/", "/peft/", "/liger_kernel/")


def owner(frames: Iterable[dict[str, Any]]) -> str:
    """`package/file.py:line function` of the innermost frame in an owner package, or "other"."""
    for f in frames:
        name = str(f.get("filename", ""))
        for pkg in OWNER_PACKAGES:
            if pkg in name:
                short = pkg.strip("/") + "/" + name.split(pkg, 1)[1]
                return f"{short}:{f.get('line', '?')} {f.get('name', '?')}"
    return "other"


def live_at_peak(events: Iterable[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """(peak bytes, the allocation events live at that peak), replaying `alloc` and `free_requested` events of one
    device's trace in order."""
    live: dict[int, dict[str, Any]] = {}
    total = peak = 0
    at_peak: list[dict[str, Any]] = []
    for e in events:
        action = e.get("action")
        if action == "alloc":
            live[e["addr"]] = e
            total += e["size"]
            if total > peak:
                peak, at_peak = total, list(live.values())
        elif action == "free_requested" and e.get("addr") in live:
            total -= live.pop(e["addr"])["size"]
    return peak, at_peak


def peak_owners(
    snapshot: dict[str, Any], top: int = 15, device: int = 0, name: Callable[[Iterable[dict]], str] = owner
) -> list[dict[str, Any]]:
    """Rows {owner, gib, share, count} of the `top` largest owners of the live memory at the trace's peak, largest
    first, then one "(rest)" row for the others; [] when the snapshot has no trace for `device`."""
    traces = snapshot.get("device_traces") or []
    if device >= len(traces) or not traces[device]:
        return []
    peak, live = live_at_peak(traces[device])
    sizes: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for e in live:
        key = name(e.get("frames") or [])
        sizes[key] += e["size"]
        counts[key] += 1
    ranked = sorted(sizes, key=lambda k: -sizes[k])
    rows = [
        {"owner": k, "gib": sizes[k] / 2**30, "share": sizes[k] / peak, "count": counts[k]}
        for k in ranked[:top]
    ]
    rest = ranked[top:]
    if rest:
        left = sum(sizes[k] for k in rest)
        rows.append({"owner": "(rest)", "gib": left / 2**30, "share": left / peak, "count": len(rest)})
    return rows


def record_peak_owners(step: Callable[[], None], top: int = 15) -> list[dict[str, Any]]:
    """Run `step()` once with the CUDA allocator's history on (Python stacks) and return `peak_owners` of it."""
    import inspect

    import torch

    record = torch.cuda.memory._record_memory_history
    # An older recording's allocations freed while it was off would look live forever: start from a clean history.
    fresh = {"clear_history": True} if "clear_history" in inspect.signature(record).parameters else {}
    torch.cuda.synchronize()
    record(max_entries=2_000_000, stacks="python", **fresh)
    try:
        step()
        torch.cuda.synchronize()
        snapshot = torch.cuda.memory._snapshot()
    finally:
        record(enabled=None)
    return peak_owners(snapshot, top, torch.cuda.current_device())
