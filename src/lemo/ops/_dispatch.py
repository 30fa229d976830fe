"""The one place that decides which implementation of an op runs.

Order of precedence: the explicit `backend=` argument, then the `LEMO_BACKEND` environment variable, then
availability ("auto": Triton for CUDA tensors when Triton imports, the PyTorch reference otherwise).
Forcing "triton" where it cannot run is an error, never a silent fallback.
"""

from __future__ import annotations

import importlib.util
import logging
import os

import torch

log = logging.getLogger(__name__)
BACKENDS = ("auto", "reference", "triton")


def triton_available() -> bool:
    """True when Triton can be imported (the GPU kernels also need CUDA tensors, or TRITON_INTERPRET=1)."""
    return importlib.util.find_spec("triton") is not None


def interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(backend: str | None, device: torch.device, *, has_triton_impl: bool = True) -> str:
    """Return "reference" or "triton" for an op whose tensors live on `device`."""
    choice = backend or "auto"
    if choice == "auto":
        choice = os.environ.get("LEMO_BACKEND", "auto")
    if choice not in BACKENDS:
        raise ValueError(f"backend={choice!r} is unknown; use one of {BACKENDS} (argument or LEMO_BACKEND).")
    if choice == "reference":
        return "reference"
    can_run = has_triton_impl and triton_available() and (device.type == "cuda" or interpreter_on())
    if choice == "triton":
        if not can_run:
            raise RuntimeError(
                "backend='triton' was forced but cannot run here "
                f"(triton installed: {triton_available()}, device: {device.type}, kernel present: {has_triton_impl}); "
                "use backend='reference' or run on a CUDA GPU (or set TRITON_INTERPRET=1 for small CPU tests)."
            )
        return "triton"
    # auto: the interpreter is for tests only, so CPU tensors take the reference unless forced.
    return "triton" if can_run and device.type == "cuda" else "reference"
