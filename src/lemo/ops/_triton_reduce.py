"""Reductions shared by the Triton kernels, written so that Triton's CPU interpreter can run them too.

`tl.max` / `tl.sum` are @triton.jit library functions, fixed as compiled or interpreted when triton is first
imported, so a kernel module reloaded under TRITON_INTERPRET=1 (the CPU tests) could not call them. `tl.reduce` is
a builtin, and the interpreter recognises these combine functions and reduces with numpy: same code as
tl.max / tl.sum on the GPU. Kernel modules import from here; the test fixture reloads this module first.
"""

from __future__ import annotations

import os

import triton
import triton.language as tl


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@triton.jit
def _max_fn(a, b):
    return tl.maximum(a, b)


_MAX_COMBINE = getattr(tl.standard, "_elementwise_max", _max_fn)


@triton.jit
def _add_fn(a, b):
    return a + b


_SUM_COMBINE = getattr(tl.standard, "_sum_combine", _add_fn)


@triton.jit
def rmax(x, axis: tl.constexpr):
    return tl.reduce(x, axis, _MAX_COMBINE)


@triton.jit
def rsum(x, axis: tl.constexpr):
    return tl.reduce(x, axis, _SUM_COMBINE)
