"""Run safety: existing runs are refused, resumes must not change training, Ctrl-C saves, seeds reproduce."""

import os
import signal

import pytest
import torch
import yaml
from safetensors.torch import load_file

import lemo.train.loop as loop
from lemo.cli.__main__ import main
from lemo.testing import tiny_finetune_config
from lemo.train.interrupt import TrainingInterrupted
from lemo.train.loop import finetune

tiny_cfg = tiny_finetune_config


def adapter(out):
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


def assert_same_adapter(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture
def no_model_load(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the check")

    monkeypatch.setattr(loop, "load_model", refuse)


def test_existing_run_is_refused_before_the_model_loads(
    tiny_model_dir, text_file, tmp_path, no_model_load, capsys
):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    args = ["finetune", "--model", str(tiny_model_dir), "--data", str(text_file), "--output-dir", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err


def test_overwrite_moves_the_old_run_aside(tiny_model_dir, text_file, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("old: run\n")
    finetune(tiny_cfg(tiny_model_dir, text_file, out, steps=1, overwrite=True))
    (old,) = tmp_path.glob("run.old-*")
    assert (old / "config.yaml").read_text() == "old: run\n"
    assert (out / "adapter").is_dir()


def test_config_yaml_records_what_was_used(tiny_model_dir, text_file, tmp_path):
    out = tmp_path / "run"
    finetune(tiny_cfg(tiny_model_dir, text_file, out, steps=1))
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert (saved["model"], saved["dtype"], saved["device"]) == (str(tiny_model_dir), "fp32", "cpu")


def test_resume_refuses_changes_that_alter_training(tiny_model_dir, text_file, tmp_path, monkeypatch):
    out = tmp_path / "run"
    finetune(tiny_cfg(tiny_model_dir, text_file, out, steps=2))
    monkeypatch.setattr(loop, "load_model", lambda *a, **k: pytest.fail("loaded before the check"))
    bad = tiny_cfg(tiny_model_dir, text_file, out, steps=4, lr=2e-2, lora={"rank": 4}, resume=True)
    with pytest.raises(ValueError) as err:
        finetune(bad)
    msg = str(err.value)
    assert "lr: 0.01 -> 0.02" in msg and "lora.rank: 8 -> 4" in msg
    assert "steps: 2" not in msg  # raising steps is allowed
    with pytest.raises(ValueError, match="steps: 2 -> 1"):
        finetune(tiny_cfg(tiny_model_dir, text_file, out, steps=1, resume=True))


def test_resume_may_raise_steps_and_change_reporting(tiny_model_dir, text_file, tmp_path):
    out = tmp_path / "run"
    finetune(tiny_cfg(tiny_model_dir, text_file, out, steps=2))
    result = finetune(
        tiny_cfg(
            tiny_model_dir,
            text_file,
            out,
            steps=3,
            save_every=1,
            eval_windows=1,
            progress=False,
            resume=True,
            # where activations wait and how the MLP is tiled change no number: allowed too
            sparsity={"block_size": 16, "keep_ratio": 0.5, "offload": "cpu", "tile_tokens": 32},
        )
    )
    assert result.start_step == 2 and len(result.losses) == 1


def test_ctrl_c_saves_a_checkpoint_and_exits_130_with_the_resume_command(
    tiny_model_dir, text_file, tmp_path, monkeypatch, capsys
):
    full = tmp_path / "full"
    finetune(tiny_cfg(tiny_model_dir, text_file, full, steps=4, save_every=0))
    step = loop._train_step
    calls = []

    def interrupted_at_3(*a, **k):
        loss = step(*a, **k)
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # lands mid-step; the loop finishes it first
        return loss

    monkeypatch.setattr(loop, "_train_step", interrupted_at_3)
    out = tmp_path / "cut"
    args = ["finetune", "--model", str(tiny_model_dir), "--data", str(text_file), "--seq-len", "128"]
    args += ["--steps", "4", "--save-every", "0", "--lr", "0.01", "--warmup-steps", "0", "--block-size", "16"]
    args += ["--keep-ratio", "0.5", "--no-progress", "--output-dir", str(out)]
    assert main(args) == 130
    err = capsys.readouterr().err
    command = f"lemo finetune --config {out / 'config.yaml'} --resume"
    assert "checkpoint saved at step 3" in err and command in err
    assert (out / "checkpoints" / "step-0000003").is_dir() and not (out / "adapter").exists()
    monkeypatch.setattr(loop, "_train_step", step)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler removed after the run
    assert main(command.split()[1:]) == 0
    assert_same_adapter(adapter(full), adapter(out))


def test_interrupt_from_the_api_raises(tiny_model_dir, text_file, tmp_path, monkeypatch):
    step = loop._train_step

    def interrupt(*a, **k):
        loss = step(*a, **k)
        signal.raise_signal(signal.SIGINT)
        return loss

    monkeypatch.setattr(loop, "_train_step", interrupt)
    with pytest.raises(TrainingInterrupted) as err:
        finetune(tiny_cfg(tiny_model_dir, text_file, tmp_path / "run"))
    assert err.value.step == 1


def test_first_run_is_reproducible_whether_or_not_a_conversion_drew_random_numbers(
    tiny_model_dir, text_file, tmp_path, monkeypatch
):
    def converting(*a, **k):  # what lemo.assets does on a machine's first run
        torch.rand(1000)
        return tiny_model_dir

    torch.rand(5)
    monkeypatch.setattr(loop, "smollm2_dir", converting)
    finetune(tiny_cfg(None, text_file, tmp_path / "first", steps=2))
    monkeypatch.setattr(loop, "smollm2_dir", lambda: tiny_model_dir)
    torch.rand(17)
    finetune(tiny_cfg(None, text_file, tmp_path / "second", steps=2))
    assert_same_adapter(adapter(tmp_path / "first"), adapter(tmp_path / "second"))
