"""Host memory for checkpointed tensors: a reusable pinned pool, a side copy stream, one-ahead prefetch.

Why hand-written: torch's `save_on_cpu` offloads every saved tensor and copies synchronously on the compute
stream; torchtune's `OffloadActivations` also works on every saved tensor. lemo stores exactly one tensor per
layer (its checkpointed input, for a sparse layer only the kept rows), and backward needs them in the reverse
order they were stored, so a stack of handles with a one-ahead prefetch is all the machinery there is.

Pinned buffers are pinned in place (`cudaHostRegister`) rather than taken from torch's pinned allocator, which
rounds every block up to a power of two: kept rows of 2.4 GiB would pin 4 GiB, and the host memory that
elimination saves would be lost to rounding. Each buffer is its own anonymous `mmap`, so it starts on a page
boundary and shares no page with another allocation: CUDA registers whole pages, and a page registered twice (two
small malloc'd buffers on one page) would fail.

On a GPU: the copy to host runs on a side stream after the compute stream has produced the tensor; in backward,
loading layer i's input starts the copy of layer i-1's on the side stream, so it overlaps layer i's recompute
(double buffering: at most one prefetched tensor waits on the GPU). On a CPU the same code copies into the pool
synchronously, which is what the tests use to check that offloading changes no number.
"""

from __future__ import annotations

import mmap
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch

_HEADROOM = 2 * 2**30  # host memory left to the process and the OS when the pool grows
HOST_ENV = "LEMO_HOST_GIB"


def declared_host_bytes() -> int | None:
    """The host memory the user declares for pinned buffers (LEMO_HOST_GIB), or None when unset.

    For machines whose MemAvailable understates what they can give: VMs whose memory grows as it is touched
    report a fraction of it at start (the 2-8 GPU device machines read 31-62 GiB of 256-560, per their KINDS.md notes).
    """
    raw = os.environ.get(HOST_ENV, "").strip()
    if not raw:
        return None
    try:
        gib = float(raw)
    except ValueError:
        gib = -1.0
    if not gib > 0:
        raise ValueError(
            f"{HOST_ENV}={raw!r} is not a positive number of GiB; set e.g. {HOST_ENV}=200, or unset it."
        )
    return int(gib * 2**30)


def available_host_bytes() -> int | None:
    """Host memory free for the pool: LEMO_HOST_GIB when set, else MemAvailable of /proc/meminfo (Linux), or None
    where neither can be read."""
    declared = declared_host_bytes()
    if declared is not None:
        return declared
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _host_buffer(nbytes: int) -> torch.Tensor:
    """[nbytes] uint8 in a private anonymous mapping: page-aligned, zero-filled lazily, unmapped when dropped."""
    # frombuffer holds a reference to the mmap object, so the mapping lives exactly as long as the tensor.
    return torch.frombuffer(mmap.mmap(-1, max(nbytes, 1)), dtype=torch.uint8)[:nbytes]  # [nbytes]


def _pin(buf: torch.Tensor) -> None:
    err = torch.cuda.cudart().cudaHostRegister(buf.data_ptr(), buf.numel(), 0)
    if int(getattr(err, "value", err)) != 0:
        raise RuntimeError(f"cudaHostRegister failed ({err})")


def _release(pinned: list[torch.Tensor]) -> None:
    # Unpin before the memory can go back to the allocator; runs when the offloader is dropped or released.
    while pinned:
        buf = pinned.pop()
        torch.cuda.cudart().cudaHostUnregister(buf.data_ptr())


@dataclass
class OffloadStats:
    """What the pool held: `peak_bytes` is the host memory a step needed, `pool_bytes` what is allocated."""

    stored: int = 0  # tensors stored since the pool was made
    bytes_live: int = 0
    peak_bytes: int = 0
    pool_bytes: int = 0
    prefetched: int = 0  # loads that found their tensor already copied back (overlapped)
    step_sizes: list[int] = field(
        default_factory=list
    )  # bytes of each tensor stored since the last begin_step


@dataclass(eq=False)
class Stored:
    """One tensor waiting in host memory for its backward."""

    buffer: torch.Tensor  # [capacity] uint8 pool buffer (pinned on CUDA hosts)
    host: torch.Tensor  # the tensor's bytes in `buffer`, viewed with its shape and dtype
    device: torch.device
    prev: Stored | None  # the tensor stored just before this one: backward loads it next
    ready: torch.cuda.Event | None = None  # prefetch copy done
    prefetched: torch.Tensor | None = None
    loaded: bool = field(default=False)
    reclaim: weakref.finalize | None = (
        None  # gives the buffer back if the graph is dropped without a backward
    )


class HostOffloader:
    """Store tensors in host memory between forward and backward; see the module docstring."""

    def __init__(self) -> None:
        self._free: list[torch.Tensor] = []  # pool buffers not holding a tensor now, reused across steps
        self._last: Stored | None = None
        self._streams: dict[torch.device, torch.cuda.Stream] = {}
        self._pinned: list[torch.Tensor] = []
        self._finalizer = weakref.finalize(self, _release, self._pinned)
        self.stats = OffloadStats()

    def release(self) -> None:
        """Unpin and drop the pool (lemo.remove does this); the offloader stays usable and pins afresh."""
        self._finalizer()
        self._free.clear()
        self._pinned = []
        self._finalizer = weakref.finalize(self, _release, self._pinned)
        self.stats.pool_bytes = 0

    def begin_step(self) -> None:
        """A new forward: its first stored tensor has no predecessor to prefetch."""
        self._last = None
        self.stats.step_sizes = []

    def reserve(self, sizes: list[int], device: torch.device) -> None:
        """Grow the pool so that it can hold tensors of these byte sizes at once, pinned on a CUDA `device`.

        The pool otherwise grows as a step first stores its tensors, and pinning fresh host memory is slow (the
        pages are faulted in and locked): a first step pays it, later ones reuse the buffers. A benchmark that
        warms up through a few layers (`lemo.bench.step.few_layers`) reserves the rest here, so the step it times
        runs as every later step of a training run would. Raises RuntimeError, as a step would, when the host
        memory is short."""
        claimed = []
        for nbytes in sorted(sizes, reverse=True):  # big first, so a small size does not take a big buffer
            claimed.append(self._buffer(nbytes, pin=device.type == "cuda"))
        self._free.extend(claimed)

    def _stream(self, device: torch.device) -> torch.cuda.Stream:
        if device not in self._streams:
            self._streams[device] = torch.cuda.Stream(device)
        return self._streams[device]

    def _buffer(self, nbytes: int, pin: bool) -> torch.Tensor:
        fits = [i for i, b in enumerate(self._free) if b.numel() >= nbytes]
        if fits:
            # The tightest fit keeps big buffers for big tensors (by index: `list.remove` would compare values).
            return self._free.pop(min(fits, key=lambda i: self._free[i].numel()))
        declared = declared_host_bytes()
        # A declared budget is the pool's whole allowance; MemAvailable already shrinks as the pool grows.
        free = declared - self.stats.pool_bytes if declared is not None else available_host_bytes()
        try:
            if free is not None and nbytes > free - _HEADROOM:
                source = f"{HOST_ENV} leaves" if declared is not None else "MemAvailable says"
                raise RuntimeError(f"{source} only {free / 2**30:.1f} GiB of host memory is available")
            buf = _host_buffer(nbytes)  # [nbytes]
            if pin:
                _pin(buf)
                self._pinned.append(buf)
        except RuntimeError as err:
            need = (self.stats.bytes_live + nbytes) / 2**30
            raise RuntimeError(
                f"offload='cpu' could not get {nbytes / 2**30:.2f} GiB more of pinned host memory ({need:.1f} GiB "
                f"for this step so far): {str(err).splitlines()[0]}. Free host RAM, shorten --seq-len, lower "
                f"--keep-ratio, or run with --offload none; `lemo plan` shows the host memory a run needs. Where "
                f"MemAvailable understates the machine (memory that grows as it is used), set {HOST_ENV}=N."
            ) from None
        self.stats.pool_bytes += nbytes
        return buf

    def _give_back(self, buf: torch.Tensor) -> None:
        self._free.append(buf)
        self.stats.bytes_live -= buf.numel()

    def store(self, x: torch.Tensor) -> Stored:
        """Copy `x` to host memory (asynchronously on a GPU); the caller may drop `x` right away."""
        nbytes = x.numel() * x.element_size()
        buf = self._buffer(nbytes, pin=x.is_cuda)
        host = buf[:nbytes].view(x.dtype).view(x.shape)
        if x.is_cuda:
            side = self._stream(x.device)
            side.wait_stream(torch.cuda.current_stream(x.device))  # x is written by kernels still queued
            with torch.cuda.stream(side):
                host.copy_(x, non_blocking=True)
            x.record_stream(side)  # the allocator must not hand x's memory out before the copy has read it
        else:
            host.copy_(x)
        handle = Stored(buf, host, x.device, self._last)
        # A forward whose backward never runs (an exception, a dropped loss) must not keep its buffer out of the
        # pool: when the graph, and with it the handle, goes away, the buffer comes back.
        handle.reclaim = weakref.finalize(handle, self._give_back, buf)
        self._last = handle
        self.stats.stored += 1
        self.stats.step_sizes.append(nbytes)
        self.stats.bytes_live += buf.numel()
        self.stats.peak_bytes = max(self.stats.peak_bytes, self.stats.bytes_live)
        return handle

    def _copy_back(self, h: Stored) -> None:
        if h.prefetched is not None:
            return
        if h.device.type != "cuda":
            h.prefetched = h.host.clone()
            return
        main = torch.cuda.current_stream(h.device)
        out = torch.empty(h.host.shape, dtype=h.host.dtype, device=h.device)  # allocated for the main stream
        side = self._stream(h.device)
        side.wait_stream(main)  # `out` may reuse memory whose last readers are still queued on main
        with torch.cuda.stream(side):
            out.copy_(h.host, non_blocking=True)
            h.ready = side.record_event()
        h.prefetched = out

    def load(self, h: Stored) -> torch.Tensor:
        """The stored tensor back on its device; starts copying the previously stored one (the next to load)."""
        if h.loaded:
            raise RuntimeError(
                "an offloaded activation was loaded twice: backward ran twice through the same graph; pass "
                "retain_graph=False, or use offload='none' for double backward."
            )
        if h.prefetched is not None:
            self.stats.prefetched += 1
        self._copy_back(h)
        x = h.prefetched
        if h.ready is not None:
            torch.cuda.current_stream(h.device).wait_event(h.ready)
        h.loaded, h.prefetched = True, None
        # The side stream reads the buffer in queue order before any later store writes it: safe to reuse now.
        h.reclaim.detach()
        self._give_back(h.buffer)
        if h.prev is not None and not h.prev.loaded:
            self._copy_back(h.prev)  # overlaps with this layer's recompute
        return x
