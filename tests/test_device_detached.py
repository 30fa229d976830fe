"""benchmarks/device/gpu_detached.sh: a run that outlives the call that started it (its own session), and the
calls after it that wait for it and bring its files back."""

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device" / "gpu_detached.sh"


def _sh(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, cwd=cwd, capture_output=True, text=True)


def test_start_returns_at_once_and_wait_brings_back_the_runs_files(tmp_path):
    env = {**os.environ, "DETACHED_ROOT": str(tmp_path / "runs"), "START_WAIT": "0"}
    # The command is quoted through: a quote and a space in its argument arrive as they were.
    cmd = 'echo "it\'s $OUT"; sleep 3; echo done > "$OUT/result.txt"'
    started = _sh("start", "job", "bash", "-c", cmd, env=env, cwd=tmp_path)
    assert started.returncode == 0, started.stderr
    assert not (tmp_path / "runs" / "job" / "rc").exists()  # still running when start returned
    again = _sh("start", "job", "true", env=env, cwd=tmp_path)
    assert again.returncode == 2 and "already running" in again.stderr
    out = tmp_path / "out"
    waited = _sh("wait", "job", "30", env={**env, "OUT": str(out)}, cwd=tmp_path)
    assert "job: exit status 0" in waited.stdout
    assert f"it's {tmp_path / 'runs' / 'job' / 'out'}" in waited.stdout  # the log's tail
    assert (out / "result.txt").read_text() == "done\n"


def test_wait_on_a_run_never_started_names_the_fix(tmp_path):
    env = {**os.environ, "DETACHED_ROOT": str(tmp_path)}
    got = _sh("wait", "nothing", env=env, cwd=tmp_path)
    assert got.returncode == 2 and "start it first" in got.stderr
