"""benchmarks/device/gpu_capability.sh suite-forms: the suite one form at a time under one deadline, each form with
its own configs; the second form gets only the time the first left, and none when too little is left. `python`
is a stand-in here that records its arguments, so the shell's logic runs without a model."""

import subprocess
from pathlib import Path

from tests.stand_ins import stand_ins

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device" / "gpu_capability.sh"
FAKE = """#!/usr/bin/env bash
echo "$@" >> "$FAKE_LOG"
case "$*" in *suite.py*) sleep "${FAKE_SLEEP:-0}";; esac
"""


def _run(tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    env, log = stand_ins(tmp_path, FAKE)
    env.update(OUT=str(tmp_path / "out"), LEMO_COMMIT="test", SUP_CONFIGS="dense dense@84 default")
    env.update({"TEXT_CONFIGS": "dense dense@87 default", **extra})
    got = subprocess.run(
        ["bash", str(SCRIPT), "suite-forms"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return got, [c for c in calls if "suite.py" in c]


def _flag(call: str, name: str) -> str:
    """The words after `name` up to the next flag."""
    words = call.split()[call.split().index(name) + 1 :]
    flags = [i for i, w in enumerate(words) if w.startswith("--")]
    return " ".join(words[: flags[0] if flags else None])


def test_each_form_runs_with_its_own_configs_and_the_second_within_the_deadline(tmp_path):
    got, calls = _run(tmp_path, DEADLINE="600")
    assert got.returncode == 0, got.stderr
    assert len(calls) == 2
    sup, text = calls
    assert _flag(sup, "--forms") == "sup" and "--configs dense dense@84 default --forms" in sup
    assert _flag(text, "--forms") == "text" and "--configs dense dense@87 default --forms" in text
    assert _flag(sup, "--budget-s") == "0"  # no estimate yet could refuse a job: the deadline stops it
    assert 590 <= int(_flag(text, "--budget-s")) <= 600  # what the first form left


def test_the_second_form_is_not_started_when_too_little_time_is_left(tmp_path):
    got, calls = _run(tmp_path, DEADLINE="121", FAKE_SLEEP="2")
    assert got.returncode == 0, got.stderr
    assert len(calls) == 1 and "--forms sup" in calls[0]
    assert "text not started" in got.stdout


def test_a_missing_setting_is_named_before_any_work(tmp_path):
    got, calls = _run(tmp_path, DEADLINE="600", TEXT_CONFIGS="")
    assert got.returncode != 0 and "set TEXT_CONFIGS" in got.stderr and calls == []
    got, calls = _run(tmp_path, DEADLINE="")
    assert got.returncode != 0 and "set DEADLINE" in got.stderr and calls == []
