"""`predict`: the plan of one training step; `check_fits`: the trainer's guard before it loads weights."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lemo.config import PlanConfig
from lemo.memory.host import HOST_ENV, available_host_bytes, declared_host_bytes
from lemo.plan.memory import MemoryEstimate, estimate
from lemo.plan.shapes import ModelShape, resolve_shape
from lemo.plan.time import H200, Rates, step_seconds, work

GIB = 2**30
DEFAULT_GPU_GIB = 80e9 / GIB  # an "80 GB" card, the cap of every committed longest-T measurement
FIXED = ("weights", "LoRA + AdamW")  # allocated once, before the first step
HOST_COPY_BYTES_S = 40e9  # pinned host <-> GPU copies per direction (PCIe Gen5 x16 reaches ~50 GB/s)
FORWARD_SHARE = 0.3  # share of a checkpointed step spent in the forward, against which the copy-out overlaps


@dataclass
class Plan:
    """Predicted memory and time of one training step, and whether it fits."""

    config: PlanConfig
    shape: ModelShape
    gpu_peak_gib: float
    """Peak allocated GPU memory (torch.cuda.max_memory_allocated), GiB."""
    phase: str
    """Where in the step the peak falls."""
    breakdown_gib: dict[str, float]
    """The components of the peak, GiB."""
    host_gib: float
    """Pinned host memory for offloaded layer inputs, GiB, of all the ranks on this node."""
    step_s: float
    """Predicted seconds per step (H200 rates)."""
    compute_s: float
    copy_s: float
    """Host copy time per direction (offload); hidden behind compute while below it."""
    kept_fraction: float
    gpu_cap_gib: float
    host_cap_gib: float | None
    advice: list[str] = field(default_factory=list)
    host_source: str = "--host-gib"
    """Where host_cap_gib comes from: "--host-gib", "LEMO_HOST_GIB", LOCAL_HOST (this machine) or "unknown"."""

    @property
    def gpu_need_gib(self) -> float:
        """The peak with the allocator's headroom on the activations (weights and adapter states are allocated
        once, at load, and do not fragment): what has to be below the cap."""
        fixed = sum(self.breakdown_gib.get(k, 0.0) for k in FIXED)
        return fixed + (self.gpu_peak_gib - fixed) * (1 + self.config.margin)

    @property
    def on_cpu(self) -> bool:
        """A CPU run: there is no GPU, and the whole step lives in host memory."""
        return self.config.device == "cpu"

    @property
    def host_need_gib(self) -> float:
        """Host memory the step needs: the pinned offload pool, plus on a CPU the whole step."""
        return self.host_gib + (self.gpu_need_gib if self.on_cpu else 0.0)

    @property
    def fits_gpu(self) -> bool:
        return self.on_cpu or self.gpu_need_gib <= self.gpu_cap_gib

    @property
    def fits_host(self) -> bool:
        return self.host_cap_gib is None or self.host_need_gib <= self.host_cap_gib

    @property
    def fits(self) -> bool:
        return self.fits_gpu and self.fits_host

    @property
    def exit_code(self) -> int:
        """`lemo plan`'s exit status: 0 when the run fits, 1 when it does not (2 is a bad argument)."""
        return 0 if self.fits else 1

    def format(self) -> str:
        from lemo.plan.format import format_plan

        return format_plan(self)


# The source of a host cap read here (MemAvailable), not given for the target: the plan must say so.
LOCAL_HOST = "free on this machine"


def available_host_gib() -> float | None:
    """Host memory for the pool in GiB, the offloader's own reading (LEMO_HOST_GIB, else MemAvailable), or None."""
    free = available_host_bytes()
    return None if free is None else free / GIB


def host_cap(cfg: PlanConfig) -> tuple[float | None, str]:
    """The target machine's host memory in GiB and where the figure comes from.

    --host-gib and LEMO_HOST_GIB are one setting, the flag first: the budget a run's offloader allows itself
    (it reads LEMO_HOST_GIB). Without either the plan can only read the machine it runs on, which is the target
    when the trainer checks but often not when `lemo plan` runs on a laptop: the source says which it was.
    """
    if cfg.host_gib is not None:
        return cfg.host_gib, "--host-gib"
    cap = available_host_gib()
    if cap is None:
        return None, "unknown"
    return cap, HOST_ENV if declared_host_bytes() is not None else LOCAL_HOST


def _with(cfg: PlanConfig, **changes: Any) -> PlanConfig:
    sparsity = changes.pop("sparsity", None)
    new = dataclasses.replace(cfg, **changes)
    if sparsity:
        new.sparsity = dataclasses.replace(cfg.sparsity, **sparsity)
    return new


def _estimate(cfg: PlanConfig, shape: ModelShape, rates: Rates) -> tuple[MemoryEstimate, float, float, float]:
    mem = estimate(shape, cfg)
    compute = step_seconds(work(shape, cfg, mem), rates)
    copy = mem.host / HOST_COPY_BYTES_S  # each rank's own copies (a GPU's link; several GPUs, several links)
    if copy:  # copies out overlap the forward, copies back the backward; a copy longer than its phase shows
        step = max(compute * FORWARD_SHARE, copy) + max(compute * (1 - FORWARD_SHARE), copy)
    else:
        step = compute
    return mem, step, compute, copy


def predict(
    config: PlanConfig | None = None, *, rates: Rates = H200, advise: bool = True, **overrides: Any
) -> Plan:
    """The plan of one training step of `config` (or of its fields as keywords); reads config.json only."""
    cfg = config if config is not None else PlanConfig(**overrides)
    if config is not None and overrides:
        cfg = _with(config, **overrides)
    shape = resolve_shape(cfg.model, cfg.shape)
    mem, step, compute, copy = _estimate(cfg, shape, rates)
    host_cap_gib, host_source = host_cap(cfg)
    plan = Plan(
        config=cfg,
        shape=shape,
        gpu_peak_gib=mem.peak / GIB,
        phase=mem.phase,
        breakdown_gib={k: v / GIB for k, v in mem.breakdown.items()},
        host_gib=mem.host * (cfg.ranks_per_node or cfg.world_size) / GIB,  # the node's ranks share its RAM
        step_s=step,
        compute_s=compute,
        copy_s=copy,
        kept_fraction=mem.kept_fraction,
        gpu_cap_gib=cfg.gpu_gib if cfg.gpu_gib is not None else DEFAULT_GPU_GIB,
        host_cap_gib=host_cap_gib,
        host_source=host_source,
    )
    if advise:
        from lemo.plan.format import advise as _advise

        plan.advice = _advise(plan, lambda c: predict(c, rates=rates, advise=False))
    return plan


def longest_seq_len(config: PlanConfig, granularity: int = 1024, limit: int = 1 << 24) -> int:
    """The largest multiple of `granularity` tokens whose step fits the caps (0 when not even one does)."""
    lo, hi = 0, granularity
    while hi <= limit and predict(config, advise=False, seq_len=hi).fits:
        lo, hi = hi, hi * 2
    hi = min(hi, limit + granularity)
    while hi - lo > granularity:
        mid = (lo + hi) // 2 // granularity * granularity
        if mid <= lo:
            break
        if predict(config, advise=False, seq_len=mid).fits:
            lo = mid
        else:
            hi = mid
    return lo


def check_fits(plan: Plan, device: Any = None) -> Plan:
    """Raise ValueError with the plan table and its advice when the step will not fit; return the plan if it does.

    `device` (a torch.device or string) sets the GPU cap to that card's total memory unless the plan was given
    `gpu_gib`; on a CPU device the whole step is checked against host RAM. Call it before loading weights.
    """
    kind = getattr(device, "type", str(device) if device is not None else "cuda").split(":")[0]
    if kind == "cuda" and plan.config.gpu_gib is None:
        total = _device_total_gib(device)
        if total is not None:  # plan again against this card, so the advice is about it too
            plan = predict(plan.config, gpu_gib=total)
    if kind != "cuda" and not plan.on_cpu:  # a CUDA plan checked for a CPU run: judge it as one
        plan = predict(plan.config, device="cpu")
    if not plan.fits:
        why = ""
        if plan.on_cpu:
            why = (
                f"\non a CPU the whole step lives in host memory: {plan.host_need_gib:.2f} GiB needed, "
                f"{plan.host_cap_gib:.2f} GiB available; free host RAM or shorten --seq-len."
            )
        raise ValueError(
            "this run will not fit (lemo plan's prediction; pass --no-plan to try anyway):\n"
            + plan.format()
            + why
        )
    return plan


def _device_total_gib(device: Any) -> float | None:
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return torch.cuda.get_device_properties(torch.device(device or "cuda")).total_memory / GIB
    except (RuntimeError, AssertionError, ValueError):
        return None


def explain_oom(plan: Plan, measured_peak_gib: float | None = None) -> str:
    """The message for an out-of-memory in training: the measured peak beside the plan, and what to change
    (the advice of the plan, re-made against the cap the run actually hit)."""
    tight = predict(plan.config, gpu_gib=min(plan.gpu_cap_gib, plan.gpu_need_gib * 0.999))
    measured = f"measured peak before the failure: {measured_peak_gib:.2f} GiB; " if measured_peak_gib else ""
    lines = [
        f"out of GPU memory ({measured}planned peak {plan.gpu_peak_gib:.2f} GiB, cap {plan.gpu_cap_gib:.1f} GiB).",
        tight.format(),
    ]
    return "\n".join(lines)
