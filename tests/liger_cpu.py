"""Liger-Kernel's Triton kernels on the CPU, through Triton's interpreter, for the CPU tests.

Liger has no PyTorch fallback (its dispatcher raises where no GPU implementation runs), so on a machine
without a GPU its kernels run in Triton's interpreter. That needs TRITON_INTERPRET=1 before Triton is first
imported (Liger's kernels call Triton's library, which must be interpreted too), so it runs in a process of its
own: tests/integrations/test_liger.py starts one for tests/integrations/liger_checks.py. Two gaps of the
interpreter (Triton 3.x) stop Liger's kernels there, and `install()` closes both without touching Liger's
arithmetic:
- a float scalar argument (RMSNorm's eps, SwiGLU's gate multiplier) reaches the kernel as a Python float, where a
  compiled kernel gets an fp32 scalar with `.to()`: it is passed as an fp32 scalar tensor instead;
- `libdevice.rsqrt` (RMSNorm) is an extern the interpreter cannot run: Triton's own `tl.rsqrt` stands in.

    python tests/liger_cpu.py [lemo bench flags]    # `lemo bench` with Liger's kernels interpreted on the CPU
"""

from __future__ import annotations

import os
import sys

_DONE: list[bool] = []


def _float_args() -> None:
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    convert = interpreter._implicit_cvt

    def implicit_cvt(arg):
        if isinstance(arg, float):  # a compiled kernel types a Python float argument as fp32
            handle = interpreter.TensorHandle(np.array([arg], dtype=np.float32), tl.float32)
            return tl.tensor(handle, tl.float32)
        return convert(arg)

    interpreter._implicit_cvt = implicit_cvt


def install() -> None:
    """Make Liger's kernels run in Triton's interpreter (once per process); see the module docstring."""
    if _DONE:
        return
    if os.environ.get("TRITON_INTERPRET") != "1" and "triton" not in sys.modules:
        os.environ["TRITON_INTERPRET"] = "1"
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError(
            "Liger's kernels run on the CPU only in a process started with TRITON_INTERPRET=1."
        )
    import liger_kernel.ops.rms_norm as rms_norm
    import triton.language as tl

    # Looked up when the kernel runs, when the interpreter has put its own tl.rsqrt in place.
    rms_norm.rsqrt = lambda x: tl.rsqrt(x)
    _float_args()
    _DONE.append(True)


if __name__ == "__main__":
    install()  # lemo's "auto" backend stays the reference on the CPU, interpreter or not
    from lemo.bench.run import main

    sys.exit(main())
