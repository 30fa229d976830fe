"""`lemo finetune` end to end: a real model, resuming after a kill, and bad input."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lemo.cli.__main__ import main
from lemo.config import FinetuneConfig
from lemo.eval.perplexity import perplexity
from lemo.integrations.transformers.loading import load_model
from lemo.testing import tiny_finetune_config
from lemo.train.loop import finetune

REPO = Path(__file__).resolve().parents[2]


def tiny_cfg(model_dir, data, out, **kw):
    return tiny_finetune_config(model_dir, data, out, **{"steps": 6, **kw})


def adapter_tensors(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "adapter" / "adapter_model.safetensors"))


@pytest.mark.slow
def test_smollm2_perplexity_on_austen_is_sane(smollm2, austen_dir):
    model, tok = load_model(smollm2)
    ids = torch.tensor(tok((austen_dir / "persuasion.txt").read_text()[:20_000])["input_ids"])
    result = perplexity(model, ids, context=1024, stride=1024, max_windows=1)
    # Real weights give ~10-60 on English prose; random weights give ~50,000 (assets.md section 3.2).
    assert 2 < result.ppl < 200


@pytest.mark.slow
def test_a_few_steps_with_elimination_lower_the_training_loss(smollm2, austen_dir, tmp_path):
    one_row = tmp_path / "row.txt"
    one_row.write_text(
        (austen_dir / "prideprejudice.txt").read_text()[:2600]
    )  # ~600 tokens: one 512-token row
    cfg = FinetuneConfig(
        data=[str(one_row)],
        seq_len=512,
        steps=5,
        lr=2e-3,
        warmup_steps=0,
        save_every=0,
        output_dir=str(tmp_path / "run"),
        progress=False,
        sparsity={"keep_ratio": 0.4, "block_size": 64},
    )
    result = finetune(cfg)
    assert result.losses[-1] < result.losses[0] - 0.05, result.losses
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_resume_after_a_clean_stop_gives_the_same_adapter(tiny_model_dir, text_file, tmp_path):
    full = finetune(tiny_cfg(tiny_model_dir, text_file, tmp_path / "full"))
    finetune(
        tiny_cfg(tiny_model_dir, text_file, tmp_path / "cut"), stop_after=3
    )  # checkpoint at 2, step 3 lost
    resumed = finetune(tiny_cfg(tiny_model_dir, text_file, tmp_path / "cut", resume=True))
    assert resumed.start_step == 2
    assert resumed.losses == full.losses[2:]
    a, b = adapter_tensors(tmp_path / "full"), adapter_tensors(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_killed_run_resumes_to_the_same_adapter(tiny_model_dir, text_file, tmp_path):
    args = [
        "finetune", "--model", str(tiny_model_dir), "--data", str(text_file), "--seq-len", "128", "--steps", "6",
        "--save-every", "2", "--lr", "0.01", "--warmup-steps", "0", "--block-size", "16", "--keep-ratio", "0.5",
        "--no-progress",
    ]  # fmt: skip
    assert main([*args, "--output-dir", str(tmp_path / "full")]) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "lemo.cli", *args, "--output-dir", str(tmp_path / "killed")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = tmp_path / "killed" / "checkpoints" / "step-0000004"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run died before its step-4 checkpoint"
    assert not (tmp_path / "killed" / "adapter").exists(), "the kill came too late to test anything"
    assert main([*args, "--output-dir", str(tmp_path / "killed"), "--resume"]) == 0
    a, b = adapter_tensors(tmp_path / "full"), adapter_tensors(tmp_path / "killed")
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--keep-ratio", "1.5"], "keep_ratio=1.5 is outside (0, 1]"),
        (["--keep-ratio", "0"], "keep_ratio=0.0 is outside (0, 1]"),
        (["--seq-len", "8"], "--seq-len 8 is below one block"),
        (["--data", "/nonexistent/book.txt"], "/nonexistent/book.txt"),
        (["--model", "/nonexistent/model"], "is not a model directory"),
        (["--scorer", "predictor", "--random-fraction", "0"], "--predictors DIR"),
    ],
)
def test_bad_input_fails_with_a_message_that_names_the_fix(
    tiny_model_dir, text_file, tmp_path, capsys, extra, message
):
    args = [
        "finetune",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(text_file),
        "--steps",
        "1",
        "--no-progress",
    ]
    args += ["--output-dir", str(tmp_path / "run"), "--seq-len", "128", "--block-size", "16", *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_empty_text_is_refused(tiny_model_dir, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    assert (
        main(
            ["finetune", "--model", str(tiny_model_dir), "--data", str(empty), "--output-dir", str(tmp_path)]
        )
        == 2
    )
    assert "is empty; pass a file with text" in capsys.readouterr().err


def test_corrupt_checkpoint_is_reported_with_the_fix(tiny_model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "run"
    finetune(tiny_cfg(tiny_model_dir, text_file, out, steps=2))
    (out / "checkpoints" / "step-0000002" / "trainable.safetensors").write_bytes(b"garbage")
    args = ["finetune", "--model", str(tiny_model_dir), "--data", str(text_file), "--seq-len", "128"]
    args += ["--block-size", "16", "--steps", "3", "--output-dir", str(out), "--resume", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "trainable.safetensors is corrupt" in err and "delete" in err


def test_every_config_preset_loads():
    from lemo.config import load_yaml

    presets = sorted((REPO / "configs").glob("*.yaml"))
    assert presets
    for p in presets:
        load_yaml(p, FinetuneConfig)
