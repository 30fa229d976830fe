"""`lemo finetune` uses Liger-Kernel where it can run unless told otherwise (FinetuneConfig.liger unset)."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from lemo.config import FinetuneConfig
from lemo.integrations import liger as liger_mod
from lemo.train import loop


@pytest.fixture
def installed(monkeypatch):
    """Pretend liger-kernel is (True) or is not (False) installed."""

    def set_to(on: bool) -> None:
        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: (object() if on else None) if name == "liger_kernel" else real(name, *a),
        )

    return set_to


def test_liger_runs_only_on_a_gpu_with_it_installed_for_a_model_it_patches(installed):
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    installed(True)
    assert liger_mod.liger_runs_here("llama", gpu)
    assert not liger_mod.liger_runs_here("llama", cpu)  # only the interpreter runs Liger's kernels on a CPU
    assert not liger_mod.liger_runs_here("gpt2", gpu)  # not a model Liger patches here
    assert not liger_mod.liger_runs_here("llama", gpu, attention="s2")  # LongLoRA's attention keeps HF's path
    installed(False)
    assert not liger_mod.liger_runs_here("llama", gpu)


def test_unset_resolves_per_machine_and_an_explicit_choice_wins(tmp_path, installed, caplog):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    installed(True)
    assert loop._use_liger(FinetuneConfig(), tmp_path, torch.device("cuda")) is True
    assert loop._use_liger(FinetuneConfig(liger=False), tmp_path, torch.device("cuda")) is False
    assert loop._use_liger(FinetuneConfig(), tmp_path, torch.device("cpu")) is False
    assert loop._use_liger(FinetuneConfig(liger=True), tmp_path, torch.device("cpu")) is True  # as asked
    installed(False)
    with caplog.at_level("INFO", logger=loop.log.name):
        assert loop._use_liger(FinetuneConfig(), tmp_path, torch.device("cuda")) is False
    assert "pip install 'lemo[liger]'" in caplog.text  # the hint names the extra


def test_resuming_may_change_the_kernels():
    from lemo.train.run_safety import check_resume_compatible

    defaults = FinetuneConfig().to_dict()
    saved = {**defaults, "liger": False}
    check_resume_compatible(saved, {**defaults, "liger": True}, defaults)
