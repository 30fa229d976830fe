"""Tests that need an optional extra skip where it is missing, and fail instead where CI requires every extra."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# One test that needs no extra, one that needs trl (tests/integrations/test_trainers.py).
SELECT = ["tests/integrations/test_trainers.py", "-k", "fused_flag_without_trl or trl_fused_head_loss"]
# pytest in a process where trl and datasets look uninstalled: every import finder reports no such module (so
# transformers' availability checks, which ask importlib.util.find_spec, see them missing too).
RUN_WITHOUT_TRL = f"""
import sys, pytest
class Hide:
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("trl", "datasets"):
            return None
        return self.inner.find_spec(name, path, target)
    def __getattr__(self, attr):
        return getattr(self.inner, attr)
sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-rsf", *{SELECT!r}]))
"""


def _pytest_without_trl(require: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LEMO_REQUIRE_EXTRAS"}
    if require:
        env["LEMO_REQUIRE_EXTRAS"] = "1"
    cmd = [sys.executable, "-c", RUN_WITHOUT_TRL]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_a_missing_extra_skips_only_the_tests_that_need_it():
    run = _pytest_without_trl(require=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed, 1 skipped" in run.stdout and "needs trl (pip install" in run.stdout


def test_ci_fails_a_test_whose_extra_is_missing():
    run = _pytest_without_trl(require=True)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed" in run.stdout and "1 error" in run.stdout  # failed in setup, before the test body
    assert "trl not installed, and LEMO_REQUIRE_EXTRAS=1 requires every extra" in run.stdout
