"""Every mistake that does not need the model is reported before the weights load, and leaves no folder behind;
short warm-ups and rows too short for token elimination are said so."""

import logging

import pytest

import lemo.train.loop as loop
from lemo.cli.__main__ import main
from lemo.config import FinetuneConfig
from lemo.train.checks import check_config


@pytest.fixture
def no_model_load(monkeypatch):
    monkeypatch.setattr(loop, "load_model", lambda *a, **k: pytest.fail("the model loaded before the check"))


def args(model, data, out, *extra):
    base = ["finetune", "--model", str(model), "--data", str(data), "--output-dir", str(out), "--no-progress"]
    return [*base, "--seq-len", "128", "--block-size", "16", "--keep-ratio", "0.5", "--steps", "1", *extra]


BAD = {
    "missing data": (["--data", "{tmp}/missing.txt"], "missing.txt does not exist"),
    "JSONL without a known key": (["--data", "{tmp}/bad.jsonl"], "bad.jsonl"),
    "more rows per step than the data has": (
        ["--batch-size", "500"],
        "rows per step, but the data gives only",
    ),
    "LoRA target the model lacks": (["--lora-targets", "qkv"], "--lora-targets ['qkv'] name no module"),
    "sparse layer past the model's layers": (["--sparse-layers", "5"], "the model has only 2 layers"),
    "keep ratios for the wrong layer count": (["--keep-ratio", "0.5,0.4,0.3"], "keep_ratio has 3 values"),
    "predictor scorer without predictors": (
        ["--scorer", "predictor", "--random-fraction", "0"],
        "--scorer predictor needs --predictors",
    ),
    "RoPE factor below 1": (["--rope-scaling", "linear", "--rope-factor", "0.5"], "must be above 1"),
    "LoRA rank 0": (["--lora-rank", "0"], "--lora-rank 0 must be at least 1"),
    "rows too short for elimination": (
        ["--seq-len", "100", "--block-size", "64"],
        "--seq-len 100 gives 1 block",
    ),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_arguments_fail_before_the_model_loads_and_leave_no_folder(
    tiny_model_dir, text_file, tmp_path, no_model_load, capsys, case
):
    (tmp_path / "bad.jsonl").write_text('{"body": "no text, prompt or messages key"}\n')
    extra, message = BAD[case]
    out = tmp_path / "runs" / "r"  # neither folder exists before
    assert main(args(tiny_model_dir, text_file, out, *(a.format(tmp=tmp_path) for a in extra))) == 2
    err = capsys.readouterr().err
    assert err.startswith("lemo finetune: error: ") and message in err, err
    assert not (tmp_path / "runs").exists()  # created for the run, removed with it


def test_a_failed_run_keeps_folders_that_existed(tiny_model_dir, text_file, tmp_path, no_model_load):
    empty, used = tmp_path / "empty", tmp_path / "used"
    empty.mkdir()
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    for out in (empty, used):
        assert main(args(tiny_model_dir, text_file, out, "--batch-size", "500")) == 2
    assert empty.is_dir() and not list(empty.iterdir())
    assert sorted(p.name for p in used.iterdir()) == ["notes.txt"]


def test_too_short_rows_are_refused_with_the_fix(tiny_model_dir, text_file, tmp_path, no_model_load, capsys):
    assert (
        main(args(tiny_model_dir, text_file, tmp_path / "r", "--seq-len", "100", "--block-size", "64")) == 2
    )
    err = capsys.readouterr().err
    assert "always keeps the first 1 (sink) and last 1 (local) blocks" in err
    assert "use --seq-len >= 192 for token elimination, or --no-sparse to train without it" in err
    assert "token elimination on" not in err


def test_too_short_rows_train_dense_with_no_sparse(tiny_model_dir, text_file, tmp_path, caplog):
    # Elimination turned off, or in no layer, has nothing to refuse: the run says "off" once.
    with caplog.at_level(logging.INFO):
        dense = ("--seq-len", "100", "--block-size", "64", "--no-sparse")
        code = main(args(tiny_model_dir, text_file, tmp_path / "r", *dense))
    assert code == 0
    assert "token elimination off" in caplog.text
    assert "token elimination on" not in caplog.text and "no token is eliminated" not in caplog.text


def test_a_run_shorter_than_its_warmup_is_warned(tiny_model_dir, text_file, tmp_path, monkeypatch, caplog):
    def stop(*a, **k):
        raise RuntimeError("stopped where the model would load")

    # The warning comes with the other checks, before the model loads (the run stops there).
    monkeypatch.setattr(loop, "load_model", stop)
    with caplog.at_level(logging.WARNING):
        assert (
            main(args(tiny_model_dir, text_file, tmp_path / "r", "--steps", "3", "--warmup-steps", "5")) == 2
        )
    text = caplog.text
    assert (
        "--warmup-steps 5 ramps the learning rate up from 0 over 5 steps, but the run has only --steps 3"
        in text
    )
    assert "never reaches --lr 0.0002 (its last step trains at 40% of it)" in text
    assert "use --warmup-steps N with N below --steps" in text


@pytest.mark.parametrize(("steps", "warmup"), [(6, 5), (3, 0), (20, 5)])
def test_warmups_that_end_within_the_run_are_not_warned(caplog, steps, warmup):
    with caplog.at_level(logging.WARNING):
        check_config(FinetuneConfig(steps=steps, warmup_steps=warmup))
    assert "warmup" not in caplog.text
