"""benchmarks/device/gpu_v14_levers.sh: the keep being timed on Liger first, then the suite's two forms on the seeds
and configs given, under the deadline END. `python` and `python3` are stand-ins that record their arguments, so
the shell's logic runs without a GPU or a model."""

import subprocess
import time
from pathlib import Path

from tests.stand_ins import stand_ins

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device" / "gpu_v14_levers.sh"
FAKE = """#!/usr/bin/env bash
echo "$@" >> "$FAKE_LOG"
case "$*" in *bench.py*) exit "${FAKE_BENCH_RC:-0}";; esac
"""


def _run(tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    env, log = stand_ins(tmp_path, FAKE, ("python", "python3"))
    env.update(
        {"OUT": str(tmp_path / "out"), "LEMO_COMMIT": "test", "END": str(int(time.time()) + 900), **extra}
    )
    got = subprocess.run(["bash", str(SCRIPT)], env=env, cwd=ROOT, capture_output=True, text=True)
    return got, log.read_text().splitlines() if log.exists() else []


def _suite_calls(calls: list[str]) -> list[str]:
    return [c for c in calls if "quality/suite.py" in c]


def test_the_keep_is_timed_then_both_forms_run_on_the_seeds_given(tmp_path):
    got, calls = _run(tmp_path, SEEDS="3", SUP_CONFIGS="dense copy3-keep60", TEXT_CONFIGS="dense default")
    assert got.returncode == 0, got.stderr
    (bench,) = [c for c in calls if "--keep-ratio" in c]
    assert "--keep-ratio 0.6" in bench and "--lengths 16384 32768" in bench and "--completion 0.02" in bench
    sup, text = _suite_calls(calls)
    assert "--configs dense copy3-keep60 --forms sup" in sup and "--seeds 3 " in sup
    assert "--configs dense default --forms text" in text
    assert '{"preset": "v14"}' in sup and "--steps 120" in sup
    # the deadline END reaches the suite: the second form may use what is left of it (900 s less the first's)
    assert "--budget-s 0 " in sup and 880 <= int(text.split("--budget-s ")[1].split()[0]) <= 900


def test_plain_text_timing_and_a_failed_timing_still_runs_the_suite(tmp_path):
    got, calls = _run(tmp_path, COMPLETION="0", SHORT_KEEP_LENGTHS="16384", FAKE_BENCH_RC="1")
    assert got.returncode == 0, got.stderr
    (bench,) = [c for c in calls if "--keep-ratio" in c]
    assert "--completion 0 " in bench and "--lengths 16384 " in bench
    sup, _ = _suite_calls(calls)
    assert (
        "--seeds 3 4 5" in sup
        and "--configs dense dense@84 dense@91 copy3-keep60 default oracle-default" in sup
    )


def test_a_missing_deadline_is_named_before_any_work(tmp_path):
    got, calls = _run(tmp_path, END="")
    assert got.returncode != 0 and "set END" in got.stderr and calls == []
