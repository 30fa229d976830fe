"""Every benchmark row names the commit it ran at: LEMO_COMMIT where a device call sets it, else the checkout's."""

from __future__ import annotations

import subprocess

from lemo.bench.run import environment


def test_commit_is_lemo_commit_when_set(monkeypatch):
    monkeypatch.setenv("LEMO_COMMIT", "abc1234")
    assert environment()["commit"] == "abc1234"


def test_commit_falls_back_to_the_checkout(monkeypatch):
    monkeypatch.delenv("LEMO_COMMIT", raising=False)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    got = environment()["commit"]
    if head.returncode != 0:  # not a git checkout (an unpacked sdist): nothing to name
        assert got == "unknown"
    else:
        assert got.removesuffix("+dirty") == head.stdout.strip()
