"""`lemo eval --task ...` and `lemo data` end to end on the tiny model (real SmolLM2 tokenizer)."""

from __future__ import annotations

import json

import pytest

from lemo.assets import austen_split
from lemo.cli.__main__ import main
from lemo.eval.capability_result import CapabilityResult
from lemo.eval.filler import encode


@pytest.fixture
def austen_env(monkeypatch, austen_dir):
    """Default filler from the Austen novels beside the repo (no fetch)."""
    monkeypatch.setenv("LEMO_AUSTEN_DIR", str(austen_dir))


def test_eval_task_writes_json_csv_and_heatmap(tiny_model_dir, tmp_path, capsys, austen_env):
    out = tmp_path / "res"  # no suffix: both formats, and the heatmap beside them
    args = ["eval", "--model", str(tiny_model_dir), "--task", "multikey", "--n-keys", "4", "--device", "cpu"]
    assert (
        main([*args, "--lengths", "512", "--depths", "0.2", "0.8", "--samples", "2", "--output", str(out)])
        == 0
    )
    res = CapabilityResult.from_json(tmp_path / "res.json")
    assert CapabilityResult.from_csv(tmp_path / "res.csv").rows == res.rows
    assert {(r.length, r.depth, r.mode) for r in res.rows} == {
        (512, d, m) for d in (0.2, 0.8) for m in ("teacher", "greedy")
    }
    assert all(r.n == 2 and 0.0 <= r.accuracy <= 1.0 for r in res.rows)
    assert len(res.samples) == 2 * 2 * 2
    printed = capsys.readouterr().out
    assert "multikey (teacher, exact match)" in printed and "     512 |" in printed
    pytest.importorskip("matplotlib")
    assert (tmp_path / "res.png").read_bytes()[:4] == b"\x89PNG"


def test_eval_task_csv_only_and_explicit_plot(tiny_model_dir, text_file, tmp_path):
    args = ["eval", "--model", str(tiny_model_dir), "--task", "passkey", "--data", str(text_file)]
    args += ["--lengths", "256", "--depths", "0.5", "--samples", "1", "--modes", "teacher", "--device", "cpu"]
    assert main([*args, "--output", str(tmp_path / "r.csv"), "--plot", "none"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["r.csv"]
    assert [r.mode for r in CapabilityResult.from_csv(tmp_path / "r.csv").rows] == ["teacher"]


def test_eval_task_errors_are_clean(tiny_model_dir, capsys):
    assert main(["eval", "--model", str(tiny_model_dir), "--task", "haystack"]) == 2
    assert "--task 'haystack' is unknown; use one of single" in capsys.readouterr().err
    assert main(["eval", "--task", "single", "--depths", "1.5"]) == 2
    assert "pass depths between 0 and 1" in capsys.readouterr().err
    args = [
        "eval",
        "--model",
        str(tiny_model_dir),
        "--task",
        "multikey",
        "--lengths",
        "64",
        "--device",
        "cpu",
    ]
    assert main(args) == 2
    assert "too short for multikey" in capsys.readouterr().err


def test_data_writes_jsonl_within_seq_len(tiny_model_dir, text_file, tmp_path, tok):
    out = tmp_path / "train.jsonl"
    args = ["data", "--model", str(tiny_model_dir), "--task", "multikey", "--seq-len", "1024", "--rows", "3"]
    assert main([*args, "--keys", "6", "--data", str(text_file), "--out", str(out), "--seed", "2"]) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 3 and all(set(r) == {"prompt", "completion"} for r in rows)
    for r in rows:
        assert len(encode(tok, r["prompt"])) + len(encode(tok, r["completion"])) <= 1024
        assert r["completion"].count("\nQuestion: What is the secret code of ") == 6
    first = out.read_text()
    assert main([*args, "--keys", "6", "--data", str(text_file), "--out", str(out), "--seed", "2"]) == 0
    assert out.read_text() == first  # reproducible from the seed


def test_data_errors_are_clean(tiny_model_dir, text_file, tmp_path, capsys):
    base = ["data", "--model", str(tiny_model_dir), "--data", str(text_file)]
    assert main(base) == 2
    assert "pass --out FILE.jsonl" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "x.jsonl"), "--seq-len", "256", "--keys", "16"]) == 2
    assert "use --keys" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "x.jsonl"), "--task", "needle"]) == 2
    assert "--task 'needle' is unknown" in capsys.readouterr().err
    assert main(["data", "--data", str(tmp_path / "missing.txt"), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x.jsonl").exists()


def test_train_and_eval_filler_differ(austen_env):
    train, held = austen_split()
    assert len(train) == 5 and held not in train
    assert all(held[:5000] not in t for t in train)
