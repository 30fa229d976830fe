"""`lemo env` report: keys, backends, cache dir, formatting."""

import importlib.util
from pathlib import Path

import pytest
import torch

from lemo.utils.env import env_report, format_env_report, lemo_cache_dir

KEYS = {"lemo", "python", "platform", "torch", "cuda", "transformers", "peft", "accelerate", "triton", "gguf"}
KEYS |= {"cuda_devices", "backends", "cache_dir"}


def test_report_has_every_key_and_reference_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    report = env_report()
    assert set(report) >= KEYS
    assert report["torch"] == torch.__version__
    assert report["backends"][0] == "reference"
    if not torch.cuda.is_available():
        assert report["cuda_devices"] == "none"
        assert report["backends"] == ["reference"]
    else:
        assert all(
            {"name", "total_memory_gib", "compute_capability"} <= set(d) for d in report["cuda_devices"]
        )


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
def test_triton_interpreter_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    report = env_report()
    assert "triton (interpreter)" in report["backends"]
    assert report["env_vars"]["TRITON_INTERPRET"] == "1"


def test_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEMO_CACHE", str(tmp_path / "c"))
    assert lemo_cache_dir() == tmp_path / "c"
    assert env_report()["cache_dir"] == str(tmp_path / "c")
    monkeypatch.delenv("LEMO_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert lemo_cache_dir() == tmp_path / ".cache" / "lemo"


def test_format() -> None:
    text = format_env_report(env_report())
    assert "torch" in text and "backends" in text and "reference" in text
    fake = {
        "lemo": "0.1.0",
        "cuda_devices": [
            {"index": 0, "name": "NVIDIA H200", "total_memory_gib": 139.8, "compute_capability": "9.0"}
        ],
        "backends": ["reference", "triton"],
        "env_vars": {},
    }
    lines = format_env_report(fake).splitlines()
    assert lines[0].startswith("lemo") and lines[0].endswith(": 0.1.0")
    assert "[0] NVIDIA H200, 139.8 GiB, compute capability 9.0" in lines[2]
    assert lines[3].endswith(": reference, triton")
    assert lines[4].endswith("(none set)")
