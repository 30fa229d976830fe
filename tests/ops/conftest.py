"""Fixtures for the Triton kernels: the CPU interpreter for CI, and a CUDA device for the `gpu` tests."""

import importlib
import os

import pytest
import torch

KERNEL_MODULES = (
    "lemo.ops._triton_reduce",  # first: the kernel modules import its jit functions
    "lemo.ops.sparse_attention.triton",
    "lemo.ops.sparse_attention.triton_rows",
    "lemo.ops.sparse_attention.triton_query",  # after triton.py: it imports its jit helpers
    "lemo.ops.block_scores.triton",
    "lemo.ops.segmented_ce.triton",
)


def _reload_kernels() -> None:
    # triton.jit decides between compiled and interpreted kernels when a module is imported, so the kernel
    # modules are (re)imported after TRITON_INTERPRET changes; op.py picks the reloaded module up on its next call.
    for name in KERNEL_MODULES:
        importlib.reload(importlib.import_module(name))


@pytest.fixture(scope="module")
def interpreter():
    """Run the Triton kernels on CPU tensors through Triton's interpreter for the tests of one module.

    On a machine with a GPU these CPU tests are skipped (the `gpu` tests cover it) unless TRITON_INTERPRET=1 was
    set for the whole session, so that compiled kernels are never swapped for interpreted ones mid-session.
    """
    pytest.importorskip("triton")
    before = os.environ.get("TRITON_INTERPRET")
    if torch.cuda.is_available() and before != "1":
        pytest.skip("interpreter tests run where no GPU is present, or under TRITON_INTERPRET=1")
    os.environ["TRITON_INTERPRET"] = "1"
    _reload_kernels()
    yield
    if before is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = before


@pytest.fixture(scope="module")
def cuda():
    """A CUDA device with compiled (not interpreted) kernels, for tests marked `gpu`."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("triton")
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        pytest.skip("TRITON_INTERPRET=1 is set: GPU tests need compiled kernels")
    return torch.device("cuda")
