"""Bad input and a hostile machine end in `lemo finetune: error: ...` naming the fix, never a traceback."""

import logging
import shutil
import sys
from pathlib import Path

import pytest

import lemo.train.checkpoint as checkpoint
import lemo.train.loop as loop
from lemo.cli.__main__ import main
from lemo.config import FinetuneConfig
from lemo.train.checkpoint import CheckpointError, save_checkpoint
from lemo.train.run_safety import warn_on_useless_lengths


@pytest.fixture
def no_model_load(monkeypatch):
    monkeypatch.setattr(loop, "load_model", lambda *a, **k: pytest.fail("the model loaded before the check"))


def run(tmp_path, *extra, model=None, data=None):
    args = ["finetune", "--output-dir", str(tmp_path / "run"), "--no-progress"]
    args += ["--model", str(model)] if model else []
    args += ["--data", str(data)] if data else []
    return main([*args, *extra])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("steps: [1\n", "is not valid YAML at line 2"),
        ("steps: ten\n", "steps: 'ten' is not an integer"),
        ("lr: [1]\n", "lr: [1] is not a number"),
        ("lora: {rank: 2.5}\n", "lora.rank: 2.5 is not an integer"),
        ("lora: 3\n", "lora: 3 must be a mapping"),
        ("lr: 0\n", "--lr 0.0 must be positive"),
        ("lr: -1e-4\n", "--lr -0.0001 must be positive"),
    ],
)
def test_bad_yaml_is_reported_before_the_model_loads(tmp_path, no_model_load, capsys, text, message):
    (tmp_path / "c.yaml").write_text(text)
    assert run(tmp_path, "--config", str(tmp_path / "c.yaml")) == 2
    err = capsys.readouterr().err
    assert err.startswith("lemo finetune: error: ") and message in err, err


def test_yaml_float_without_a_dot_is_read_as_a_number(tmp_path):
    from lemo.config import load_yaml

    (tmp_path / "c.yaml").write_text("lr: 1e-4\n")  # PyYAML alone reads this as the string "1e-4"
    assert load_yaml(tmp_path / "c.yaml", FinetuneConfig).lr == 1e-4


def test_output_dir_that_is_a_file(tmp_path, no_model_load, capsys):
    (tmp_path / "run").write_text("")
    assert run(tmp_path) == 2
    assert "is a file; pass a folder path" in capsys.readouterr().err


def test_output_dir_that_cannot_be_written(tmp_path, no_model_load, monkeypatch, capsys):
    def denied(self, data):  # chmod does not stop root, who runs CI here
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "write_bytes", denied)
    assert run(tmp_path) == 2
    err = capsys.readouterr().err
    assert "cannot be written (Permission denied)" in err and "another --output-dir" in err


def test_model_dir_without_weights(tiny_model_dir, tmp_path, no_model_load, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_model_dir / "config.json", bare / "config.json")
    assert run(tmp_path, model=bare) == 2
    assert "has a config.json but no weights" in capsys.readouterr().err


def test_full_disk_during_a_checkpoint_save(tmp_path, monkeypatch):
    import torch

    def full(*a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 320 vs 224")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(CheckpointError, match="disk full") as err:
        save_checkpoint(tmp_path, 3, {"trainable": {"w": torch.zeros(2)}})
    assert str(tmp_path) in str(err.value) and "--output-dir" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # the half-written temp folder is gone


def test_warnings_for_lengths_that_cannot_work(caplog):
    # Rows too short for elimination are refused instead (test_before_load.py).
    cfg = FinetuneConfig(seq_len=48, eval_lengths=[4096], sparsity={"block_size": 16})
    with caplog.at_level(logging.WARNING):
        warn_on_useless_lengths(cfg, max_positions=2048)
    text = caplog.text
    assert "length 4096 exceeds the model's 2048 positions" in text and "--rope-factor" in text


def test_plots_are_skipped_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # find_spec now says it is absent
    monkeypatch.delitem(sys.modules, "lemo.predictor.plot", raising=False)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        import lemo.predictor.plot  # noqa: F401 - calibration catches this ImportError and skips its plots


def test_calibrate_without_matplotlib_saves_predictors_and_warns(
    tiny_model_dir, text_file, tmp_path, monkeypatch, caplog
):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.delitem(sys.modules, "lemo.predictor.plot", raising=False)
    preds = tmp_path / "preds"
    args = ["calibrate", "--model", str(tiny_model_dir), "--block-size", "16", "--keep-ratio", "0.5"]
    args += [
        "--data",
        str(text_file),
        "--holdout",
        str(text_file),
        "--output",
        str(preds),
        "--seq-len",
        "128",
    ]
    args += ["--steps", "2", "--max-chunks", "1", "--no-progress", "--prune-every", "0"]
    with caplog.at_level(logging.WARNING):
        assert main(args) == 0
    assert (preds / "predictors.safetensors").is_file() and not list(preds.glob("*.png"))
    assert "plots were skipped" in caplog.text


def test_an_unsupported_architecture_is_named_before_lora_targets(tmp_path, smollm2, no_model_load):
    from transformers import GPT2Config, GPT2LMHeadModel

    model_dir = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=49152)).save_pretrained(model_dir)
    for f in smollm2.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens")):
            shutil.copy(f, model_dir / f.name)
    text = tmp_path / "t.txt"
    text.write_text("word " * 600)
    cfg = FinetuneConfig(
        model=str(model_dir), data=[str(text)], seq_len=256, steps=1, output_dir=str(tmp_path / "r")
    )
    with pytest.raises(ValueError, match="model type 'gpt2' is not supported by lemo"):
        loop.finetune(cfg)


@pytest.mark.parametrize("memory", [{}, {"gradient_checkpointing": True}])
def test_a_normal_run_warns_nothing(tiny_model_dir, text_file, tmp_path, memory):
    # Every run printed PEFT's FutureWarning about transformers' deprecated `is_gradient_checkpointing` (PEFT
    # reads it in PeftModel.__init__): training, and loading the adapter again, must not warn at all.
    import warnings

    from lemo.integrations.peft import load_adapter
    from lemo.integrations.transformers.loading import load_model
    from lemo.testing import tiny_finetune_config
    from lemo.train.loop import finetune

    cfg = tiny_finetune_config(
        tiny_model_dir, text_file, tmp_path / "run", steps=2, eval_lengths=[128], **memory
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        finetune(cfg)
        load_adapter(load_model(tiny_model_dir)[0], tmp_path / "run" / "adapter")
    assert not caught, "\n".join(
        f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught
    )
