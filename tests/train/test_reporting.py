"""`--report-to`: each step's metrics reach TensorBoard / wandb; a missing package is an error naming the fix."""

import importlib.util
import sys
import types

import pytest

from lemo.config import FinetuneConfig
from lemo.testing import tiny_finetune_config
from lemo.train.loop import finetune


def _cfg(tiny_model_dir, text_file, out, **kw):
    return tiny_finetune_config(tiny_model_dir, text_file, out, steps=2, save_every=0, **kw)


def _pretend_installed(monkeypatch, *names):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n in names else real(n, *a))


def test_unknown_and_missing_reporters_name_the_fix(monkeypatch):
    with pytest.raises(ValueError, match="--report-to 'mlflow' is unknown"):
        FinetuneConfig(report_to=["mlflow"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "wandb" else real(n, *a))
    with pytest.raises(ValueError, match="pip install wandb"):
        FinetuneConfig(report_to=["wandb"])


def test_each_step_reaches_tensorboard_and_wandb(tiny_model_dir, text_file, tmp_path, monkeypatch):
    scalars, logged, closed = [], [], []

    class Writer:  # stands in for torch.utils.tensorboard.SummaryWriter (the tensorboard package is optional)
        def __init__(self, log_dir):
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step):
            scalars.append((tag, step, value))

        def close(self):
            closed.append("tb")

    class Run:
        def log(self, values, step):
            logged.append((step, values))

        def finish(self):
            closed.append("wandb")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=lambda **kw: Run()))
    _pretend_installed(monkeypatch, "tensorboard", "wandb")
    finetune(_cfg(tiny_model_dir, text_file, tmp_path / "run", report_to=["tensorboard", "wandb"]))
    losses = [(step, value) for tag, step, value in scalars if tag == "train/loss"]
    assert [s for s, _ in losses] == [1, 2] and all(v == v for _, v in losses)  # finite, one per step
    assert {tag for tag, _, _ in scalars} >= {"train/loss", "train/lr", "train/kept"}
    assert [step for step, _ in logged] == [1, 2] and "train/loss" in logged[0][1]
    assert sorted(closed) == ["tb", "wandb"]
