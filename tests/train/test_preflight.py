"""`lemo finetune` plans before loading weights (`--no-plan` skips it) and explains an out-of-memory."""

import pytest
import torch

import lemo.plan.core as plan_core
import lemo.train.loop as loop
from lemo.cli.__main__ import main
from lemo.testing import tiny_finetune_config
from lemo.train.loop import finetune


def _cfg(model_dir, text, out, **kw):
    return tiny_finetune_config(model_dir, text, out, steps=1, save_every=0, device="cpu", **kw)


def test_a_run_that_will_not_fit_stops_before_loading_weights(
    tiny_model_dir, text_file, tmp_path, monkeypatch
):
    monkeypatch.setattr(plan_core, "available_host_gib", lambda: 1e-4)  # a machine with almost no memory
    monkeypatch.setattr(loop, "load_model", lambda *a, **k: pytest.fail("weights loaded before the plan"))
    with pytest.raises(ValueError, match=r"will not fit.*--no-plan") as err:
        finetune(_cfg(tiny_model_dir, text_file, tmp_path / "run"))
    assert "host" in str(err.value)  # the plan's table says where the memory goes


def test_no_plan_skips_the_check(tiny_model_dir, text_file, tmp_path, monkeypatch):
    monkeypatch.setattr(plan_core, "available_host_gib", lambda: 1e-4)
    result = finetune(_cfg(tiny_model_dir, text_file, tmp_path / "run", plan=False))
    assert len(result.losses) == 1


def test_out_of_memory_in_training_names_the_plan_and_the_fix(
    tiny_model_dir, text_file, tmp_path, monkeypatch, capsys
):
    def oom(*_a, **_k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop, "_accumulate", oom)
    cfg = _cfg(tiny_model_dir, text_file, tmp_path / "run")
    args = ["finetune", "--model", cfg.model, "--data", *cfg.data, "--output-dir", cfg.output_dir, "--steps", "1",
            "--seq-len", "128", "--device", "cpu", "--no-progress", "--block-size", "16"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "out of GPU memory" in err and "planned peak" in err and "Traceback" not in err
