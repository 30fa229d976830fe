"""Gradient accumulation and learning-rate schedules, through checkpoints and resumes."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from lemo.testing import tiny_finetune_config
from lemo.train.loop import finetune


def tiny_cfg(model_dir, data, out, **kw):
    return tiny_finetune_config(model_dir, data, out, **{"steps": 3, "save_every": 0, **kw})


def lrs(out) -> list[float]:
    return [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_grad_accum_matches_one_big_batch(tiny_model_dir, text_file, tmp_path):
    # Without elimination the two differ only by float summation order.
    big = finetune(tiny_cfg(tiny_model_dir, text_file, tmp_path / "big", batch_size=2, sparse=False))
    acc = finetune(
        tiny_cfg(tiny_model_dir, text_file, tmp_path / "acc", batch_size=1, grad_accum=2, sparse=False)
    )
    assert acc.losses == pytest.approx(big.losses, rel=1e-4)
    a = load_file(str(tmp_path / "big" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "acc" / "adapter" / "adapter_model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-5)


def test_grad_accum_resume_counts_optimizer_steps(tiny_model_dir, text_file, tmp_path):
    kw = dict(batch_size=1, grad_accum=2, steps=4, save_every=2)
    full = finetune(tiny_cfg(tiny_model_dir, text_file, tmp_path / "full", **kw))
    finetune(tiny_cfg(tiny_model_dir, text_file, tmp_path / "cut", **kw), stop_after=3)
    resumed = finetune(tiny_cfg(tiny_model_dir, text_file, tmp_path / "cut", resume=True, **kw))
    assert resumed.start_step == 2 and resumed.losses == full.losses[2:]


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_lr_schedule_survives_a_resume(tiny_model_dir, text_file, tmp_path, schedule):
    kw = dict(steps=6, save_every=2, warmup_steps=2, lr_schedule=schedule)
    finetune(tiny_cfg(tiny_model_dir, text_file, tmp_path / "full", **kw))
    finetune(tiny_cfg(tiny_model_dir, text_file, tmp_path / "cut", **kw), stop_after=3)
    finetune(tiny_cfg(tiny_model_dir, text_file, tmp_path / "cut", resume=True, **kw))
    assert lrs(tmp_path / "cut") == lrs(tmp_path / "full")
    # Logged after the scheduler moved on: step c's value is the lr of step c+1 (warm-up from 0 over 2 steps).
    t = [max(0.0, (c - 2) / 4) for c in range(1, 7)]
    decay = [1 - x for x in t] if schedule == "linear" else [0.5 * (1 + math.cos(math.pi * x)) for x in t]
    expected = [0.5, *decay[1:]]
    assert lrs(tmp_path / "full") == pytest.approx([1e-2 * f for f in expected], abs=1e-9)


def test_long_gpu_runs_are_told_the_first_step_tunes_kernels():
    import torch

    from lemo.config import FinetuneConfig
    from lemo.train.loop import first_step_note

    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    long = FinetuneConfig(seq_len=262144)
    assert "compiles and tunes lemo's kernels" in first_step_note(long, gpu)
    assert first_step_note(long, cpu) is None
    assert first_step_note(FinetuneConfig(seq_len=8192), gpu) is None
    assert first_step_note(FinetuneConfig(seq_len=262144, sparse=False), gpu) is None
    assert first_step_note(FinetuneConfig(seq_len=262144, sparsity={"backend": "reference"}), gpu) is None
