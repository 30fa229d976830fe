"""Launch configurations of the three attention kernels in `triton.py`: the tuning candidates, the fp32 one and
the interpreter's. They belong to that file's tile layout (its loops' constraints are stated below) and are
kept apart only to keep it under the project's file size.
"""

from __future__ import annotations

import triton


def _cfg(num_warps: int, num_stages: int, **blocks: int) -> triton.Config:
    return triton.Config(blocks, num_warps=num_warps, num_stages=num_stages)


# Tiny tiles under the interpreter: the CPU tests then cross several tiles and both loop phases at small T.
INTERP = {"fwd": _cfg(1, 1, BLOCK_M=32, BLOCK_N=16), "dkdv": _cfg(1, 1, BLOCK_M=16, BLOCK_N=32),
          "dq": _cfg(1, 1, BLOCK_M=32, BLOCK_N=16)}  # fmt: skip
# fp32 is the exactness path (tests, CPU-parity checks), not the training path: one safe configuration each.
FP32 = {"fwd": _cfg(4, 2, BLOCK_M=64, BLOCK_N=32), "dkdv": _cfg(4, 2, BLOCK_M=16, BLOCK_N=32),
        "dq": _cfg(4, 2, BLOCK_M=32, BLOCK_N=16)}  # fmt: skip
# bf16/fp16 candidates, tuned once per (head size, dtype, length bucket). Constraints the loops rely on:
# forward and dQ need BLOCK_M % BLOCK_N == 0 (their unmasked phase ends on a tile start). Registers were
# checked by compiling for sm_90 (benchmarks/ops/aot_check.py): none of these spills at D = 64 or 128.
TUNE = {
    "fwd": [
        _cfg(8, 3, BLOCK_M=128, BLOCK_N=64),
        _cfg(8, 2, BLOCK_M=128, BLOCK_N=128),
        _cfg(8, 4, BLOCK_M=128, BLOCK_N=64),
        _cfg(4, 3, BLOCK_M=64, BLOCK_N=64),
    ],
    "dkdv": [
        _cfg(8, 3, BLOCK_M=32, BLOCK_N=128),
        _cfg(8, 2, BLOCK_M=32, BLOCK_N=128),
        _cfg(8, 3, BLOCK_M=16, BLOCK_N=128),
        _cfg(4, 3, BLOCK_M=32, BLOCK_N=64),
    ],
    "dq": [
        _cfg(8, 2, BLOCK_M=128, BLOCK_N=64),
        _cfg(8, 3, BLOCK_M=128, BLOCK_N=32),
        _cfg(4, 3, BLOCK_M=64, BLOCK_N=32),
    ],
}


# The kept-queries kernels of `triton_query.py` (queries of kept rows against all keys; backward elimination).
# No loop constraint on the block sizes: the unmasked key phase ends on a BLOCK_N multiple below the tile's first
# position. Query tiles of 64 rows match one kept block; 128-row tiles may hold two non-adjacent blocks (their
# masked phase then spans the gap), so both are candidates. Compiled for sm_90 with Triton 3.9 (aot_check's
# method): none spills at D = 64 or 128 (64 x 128 forward, 64 x 128 dK/dV and 64 x 64 dQ at 4 warps did and were
# dropped). Not yet timed on a GPU (docs/kernels.md).
QUERY_INTERP = {"fwd": _cfg(1, 1, BLOCK_M=16, BLOCK_N=16), "dkdv": _cfg(1, 1, BLOCK_M=16, BLOCK_N=32),
                "dq": _cfg(1, 1, BLOCK_M=16, BLOCK_N=16)}  # fmt: skip
QUERY_FP32 = {"fwd": _cfg(4, 2, BLOCK_M=64, BLOCK_N=32), "dkdv": _cfg(4, 2, BLOCK_M=16, BLOCK_N=32),
              "dq": _cfg(4, 2, BLOCK_M=32, BLOCK_N=16)}  # fmt: skip
QUERY_TUNE = {
    "fwd": [_cfg(8, 3, BLOCK_M=64, BLOCK_N=64), _cfg(4, 2, BLOCK_M=64, BLOCK_N=64),
            _cfg(8, 3, BLOCK_M=128, BLOCK_N=64), _cfg(8, 2, BLOCK_M=128, BLOCK_N=128)],
    "dkdv": [_cfg(8, 3, BLOCK_M=32, BLOCK_N=128), _cfg(4, 3, BLOCK_M=32, BLOCK_N=64),
             _cfg(8, 2, BLOCK_M=16, BLOCK_N=128), _cfg(4, 3, BLOCK_M=16, BLOCK_N=64)],
    "dq": [_cfg(4, 3, BLOCK_M=64, BLOCK_N=32), _cfg(8, 3, BLOCK_M=64, BLOCK_N=64),
           _cfg(8, 3, BLOCK_M=128, BLOCK_N=32), _cfg(8, 2, BLOCK_M=128, BLOCK_N=64)],
}  # fmt: skip
