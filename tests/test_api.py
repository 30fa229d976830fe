"""`lemo.api`: a config and keyword overrides together apply the overrides (they used to be dropped silently)."""

import pytest

from lemo import api
from lemo.config import CalibrateConfig, DataConfig, EvalConfig, FinetuneConfig, PlanConfig


def test_overrides_replace_fields_of_the_config_given(capsys):
    base = PlanConfig(shape="tiny", seq_len=1024)
    plan = api.plan(base, seq_len=2048, sparsity={"keep_ratio": 0.3})
    assert plan.config.seq_len == 2048 and plan.config.sparsity.keep_ratio == 0.3
    assert (
        plan.config.shape == "tiny" and base.seq_len == 1024
    )  # the rest kept; the caller's config untouched
    assert "T=2048" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("name", "target", "cls"),
    [
        ("finetune", "_finetune", FinetuneConfig),
        ("evaluate", "_evaluate", EvalConfig),
        ("make_task_data", "_make_task_data", DataConfig),
        ("calibrate_predictors", "run_calibrate", CalibrateConfig),
    ],
)
def test_every_command_applies_overrides(monkeypatch, name, target, cls):
    monkeypatch.setattr(api, target, lambda cfg: cfg)  # what the command would run with
    got = getattr(api, name)(cls(), model="m")
    assert isinstance(got, cls) and got.model == "m"
    assert getattr(api, name)(model="n").model == "n"  # keywords alone still build the config


def test_overrides_are_validated_and_unknown_ones_refused():
    with pytest.raises(ValueError, match="--seq-len 0"):
        api.plan(PlanConfig(shape="tiny"), seq_len=0)
    with pytest.raises(
        TypeError, match=r"unknown PlanConfig fields \['seq_lenn'\]; known fields: .*'seq_len'"
    ):
        api.plan(PlanConfig(shape="tiny"), seq_lenn=2048)
    with pytest.raises(TypeError, match="unknown FinetuneConfig fields"):
        api.finetune(stepz=3)
    with pytest.raises(TypeError, match="config must be a PlanConfig, got FinetuneConfig"):
        api.plan(FinetuneConfig(), seq_len=2048)
