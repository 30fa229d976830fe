"""lemo.train.progress: the bar's metrics and metrics.jsonl."""

from __future__ import annotations

import json
import math

import torch

from lemo.train.progress import MetricsWriter, Progress, peak_memory_bytes


def test_progress_reports_metrics():
    with Progress(total=4, initial=1, device="cpu", disable=True) as bar:
        m1 = bar.update(loss=2.5, tokens=1000, kept=0.4)
        m2 = bar.update(loss=torch.tensor(2.0).item(), tokens=1000)
    assert m1["step"] == 2 and m2["step"] == 3
    assert m1["loss"] == 2.5 and m1["kept"] == 0.4 and "kept" not in m2
    assert m1["tokens_per_s"] > 0 and m1["peak_mem_gb"] > 0
    assert m2["eta_s"] >= 0 and m2["elapsed_s"] > 0
    assert Progress._postfix(m1).startswith("loss=2.5000 tok/s=")
    assert "kept=0.40" in Progress._postfix(m1)


def test_peak_memory_on_cpu_is_process_rss():
    assert peak_memory_bytes("cpu") > 1024**2  # a Python process with torch holds well over 1 MiB


def test_metrics_writer_appends_valid_jsonl(tmp_path):
    path = tmp_path / "run" / "metrics.jsonl"
    with MetricsWriter(path) as w:
        w.write({"step": 1, "loss": 2.0, "path": tmp_path})
        w.write({"step": 2, "loss": math.nan, "lr": torch.tensor(1e-4)})
        # Flushed line by line: readable while the run is going.
        assert len(path.read_text().splitlines()) == 2
    with MetricsWriter(path) as w:  # reopened on resume: appends
        w.write({"step": 3, "loss": 1.5})
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[1]["loss"] is None and records[0]["path"] == str(tmp_path)
    assert abs(records[1]["lr"] - 1e-4) < 1e-9


def test_metrics_writer_resume_drops_redone_steps_and_half_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "lo')  # killed mid-line
    with MetricsWriter(path, resume_step=2) as w:
        w.write({"step": 3, "loss": 1.0})
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]


def test_metrics_writer_starts_a_new_line_after_a_half_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2, "lo')
    with MetricsWriter(path) as w:
        w.write({"step": 2})
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1]) == {"step": 2}
