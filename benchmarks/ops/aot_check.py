"""Compile every kernel configuration for sm_90 without a GPU and print registers, spills and shared memory.

Catches compile errors and register spills before spending device time (stack > 0 means spills). Usage:
    PYTHONPATH=src python benchmarks/ops/aot_check.py
Put another Triton first on PYTHONPATH to check that version (e.g. the one on the GPU machines).
"""

from __future__ import annotations

import inspect
import re
import subprocess
import tempfile
from pathlib import Path

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from lemo.ops.block_scores import triton as bs
from lemo.ops.segmented_ce import triton as ce
from lemo.ops.sparse_attention import triton as sa
from lemo.ops.sparse_attention import triton_rows as sa_rows

TARGET = GPUTarget("cuda", 90, 32)
# Pointer arguments by name; everything else that is not constexpr is an int32 or fp32 scalar.
FLOAT_SCALARS = {"qk_scale", "sm_scale", "scale"}


def compile_one(kernel, dtype: str, constexprs: dict, num_warps: int, num_stages: int, ptrs_fp32=(), ints=()):
    fn = kernel.fn if hasattr(kernel, "fn") else kernel
    names = list(inspect.signature(fn).parameters)
    sig = {}
    for n in names:
        if n in constexprs:
            sig[n] = "constexpr"
        elif n in FLOAT_SCALARS:
            sig[n] = "fp32"
        elif (n.isupper() and n not in ints) or n in ptrs_fp32:
            sig[n] = (
                "*fp32"
                if n in ptrs_fp32
                else ("*i32" if n in ("CU",) else ("*i64" if n in ("ROWS", "LABELS") else f"*{dtype}"))
            )
        else:
            sig[n] = "i32"
    # What the JIT's specialisation gives on real tensors: 16-byte aligned pointers, strides divisible by 16.
    aligned = [
        i for i, n in enumerate(names) if sig[n].startswith("*") or (n.startswith("s") and sig[n] == "i32")
    ]
    attrs = {(i,): [["tt.divisibility", 16]] for i in aligned}
    src = ASTSource(
        fn=kernel,
        signature=sig,
        constexprs={(names.index(k),): v for k, v in constexprs.items()},
        attrs=attrs,
    )
    k = triton.compile(src, target=TARGET, options={"num_warps": num_warps, "num_stages": num_stages})
    return k, _resources(k)


def _resources(k) -> str:
    """Registers and stack (spills) from the cubin via the cuobjdump shipped with Triton; shared memory."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(k.asm["cubin"])
        f.flush()
        out = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True, text=True).stdout
    m = re.search(r"REG:(\d+).*?STACK:(\d+)", out)
    regs = f"regs={m.group(1)} stack={m.group(2)}" if m else "regs=?"
    return f"{regs} smem={k.metadata.shared} wgmma={'wgmma' in k.asm['ptx']}"


def main():
    rows = []
    for D in (64, 128):
        for name, kernel in sa._KERNELS.items():
            for cfg in sa._TUNE[name] + [sa._FP32[name]]:
                dtype = "fp32" if cfg in (sa._FP32[name],) else "bf16"
                cx = dict(HEAD_DIM=D, BLOCK_D=D, MASK_D=False, IEEE=dtype == "fp32", **cfg.kwargs)
                try:
                    _, info = compile_one(
                        kernel, dtype, cx, cfg.num_warps, cfg.num_stages, ptrs_fp32=("LSE", "DELTA")
                    )
                    rows.append(
                        f"attn {name:5s} D={D} {dtype} {cfg.kwargs} w{cfg.num_warps} s{cfg.num_stages}: {info}"
                    )
                except Exception as e:
                    rows.append(
                        f"attn {name} D={D} {dtype} {cfg.kwargs}: FAIL {type(e).__name__}: {str(e)[:300]}"
                    )
                print(rows[-1], flush=True)
    for D in (64, 128):
        for dtype in ("bf16", "fp32"):
            tile, launch = bs._launch_options(64, torch.float32 if dtype == "fp32" else torch.bfloat16)
            cx = dict(HEAD_DIM=D, BLOCK_D=D, BLOCK=64, TILE=tile, IEEE=dtype == "fp32")
            try:
                _, info = compile_one(
                    bs._block_score_kernel, dtype, cx, launch["num_warps"], launch["num_stages"],
                    ptrs_fp32=("OUT",), ints=("T", "H"),
                )  # fmt: skip
                print(f"block_scores D={D} {dtype} tile {tile}: ok {info}")
            except Exception as e:
                print(f"block_scores D={D} {dtype}: FAIL {type(e).__name__}: {str(e)[:300]}")
    for dtype in ("bf16", "fp32"):
        for wg in (True, False):
            try:
                _, info = compile_one(
                    ce._ce_rows_kernel,
                    dtype,
                    dict(BLOCK_V=4096, WRITE_GRAD=wg),
                    8,
                    3,
                    ptrs_fp32=("LOSS",),
                    ints=("V",),
                )
                print(f"ce {dtype} grad={wg}: {info}")
            except Exception as e:
                print(f"ce {dtype}: FAIL {type(e).__name__}: {str(e)[:300]}")
    try:
        compile_one(sa_rows._add_rows_kernel, "bf16", dict(BLOCK_R=16, BLOCK_C=256), 4, 2)
        print("add_rows: ok")
    except Exception as e:
        print(f"add_rows: FAIL {type(e).__name__}: {str(e)[:300]}")


if __name__ == "__main__":
    main()
