"""Peak bytes of the CPU storages that ops create, counted by a dispatch mode: allocator-exact on a CPU and
independent of the planner it checks (tests/plan/test_cpu_peaks.py, benchmarks/plan/plan_peak_probe.py)."""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveStorages(TorchDispatchMode):
    """Peak bytes of CPU storages created inside the mode (views and in-place results share a storage).

    Storages of `existing` tensors (weights, optimizer states) are not counted. With `record=True`, the storages
    alive at the peak are kept as (bytes, made by) pairs: the op, the autograd node running then, shape, dtype.
    """

    def __init__(self, existing: list[torch.Tensor], record: bool = False) -> None:
        super().__init__()
        self.old = {t.untyped_storage().data_ptr() for t in existing}
        self.live: dict[int, tuple[int, str]] = {}
        self.now = self.peak = 0
        self.record = record
        self.at_peak: list[tuple[int, str]] = []
        self.peak_op = ""

    def _free(self, key: int) -> None:
        self.now -= self.live.pop(key, (0, ""))[0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type != "cpu":
                continue
            storage = t.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if size and key not in self.live and key not in self.old:
                self.live[key] = (size, self._maker(func, t) if self.record else "")
                self.now += size
                if self.now > self.peak:
                    self.peak = self.now
                    if self.record:
                        self.at_peak, self.peak_op = list(self.live.values()), self._maker(func, None)
                weakref.finalize(storage, self._free, key)
        return out

    @staticmethod
    def _maker(func, t: torch.Tensor | None) -> str:
        node = torch._C._current_autograd_node()
        where = f"{func} in {node.name() if node is not None else 'forward'}"
        return where if t is None else f"{where} {tuple(t.shape)} {t.dtype}"
