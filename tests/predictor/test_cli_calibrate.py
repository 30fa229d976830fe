"""`lemo calibrate` then `lemo finetune --scorer predictor` on a tiny model, end to end through the CLI."""

import json

from lemo.cli.__main__ import main


def test_calibrate_then_finetune_with_predictors(tiny_model_dir, text_file, tmp_path, capsys):
    preds = tmp_path / "preds"
    common = ["--model", str(tiny_model_dir), "--block-size", "16", "--keep-ratio", "0.5"]
    args = [
        "calibrate",
        *common,
        "--data",
        str(text_file),
        "--holdout",
        str(text_file),
        "--output",
        str(preds),
    ]
    args += ["--seq-len", "128", "--steps", "4", "--max-chunks", "2", "--no-progress", "--prune-every", "0"]
    assert main(args) == 0, capsys.readouterr().err
    assert (preds / "predictors.safetensors").is_file() and (preds / "predictors.json").is_file()
    run = tmp_path / "run"
    ft = ["finetune", *common, "--data", str(text_file), "--seq-len", "128", "--steps", "2", "--no-progress"]
    ft += [
        "--scorer",
        "predictor",
        "--random-fraction",
        "0",
        "--predictors",
        str(preds),
        "--output-dir",
        str(run),
    ]
    assert main(ft) == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(r["predictor_ms"] > 0 and r["predictor_param_mb"] > 0 for r in records)
