"""Austen corpus reading: env-dir and cache read paths, cache writing, the fallback; reading never fetches.

The installer that fills the cache (apt-get, .deb unpacking, the real fetch) is tested in test_install.py.
"""

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from lemo.assets.austen import NOVELS, AustenCorpus, austen_texts, write_cache


@pytest.fixture(autouse=True)
def _no_env_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEMO_AUSTEN_DIR", raising=False)


def _fake_texts() -> dict[str, str]:
    return {n: f"{n.upper()}\n\nBy Jane Austen\n" for n in NOVELS}


FAKE_APT = """#!/bin/sh
touch "$STATE/apt-get-ran"
exit 100
"""


def _forbid_fetch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Put an apt-get on PATH that leaves a marker when run; returns the marker's path."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "apt-get").write_text(FAKE_APT)
    (bin_dir / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("STATE", str(tmp_path))
    return tmp_path / "apt-get-ran"


def test_env_dir_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text in _fake_texts().items():
        (tmp_path / f"{name}.txt").write_text(text, encoding="utf-8")
    monkeypatch.setenv("LEMO_AUSTEN_DIR", str(tmp_path))
    ran = _forbid_fetch(monkeypatch, tmp_path)
    corpus = austen_texts(tmp_path / "unused-cache")
    assert corpus == AustenCorpus(_fake_texts(), f"dir:{tmp_path}")
    assert not ran.exists()


def test_env_dir_missing_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "emma.txt").write_text("x", encoding="utf-8")
    monkeypatch.setenv("LEMO_AUSTEN_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"persuasion\.txt"):
        austen_texts()


def test_installed_cache_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cache(tmp_path / "austen", _fake_texts())
    ran = _forbid_fetch(monkeypatch, tmp_path)
    corpus = austen_texts(tmp_path)
    assert corpus == AustenCorpus(_fake_texts(), "debian:r-cran-janeaustenr")
    assert sorted(p.name for p in (tmp_path / "austen").iterdir()) == sorted(f"{n}.txt" for n in NOVELS)
    assert not ran.exists()


def test_default_cache_dir_follows_lemo_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEMO_CACHE", str(tmp_path))
    write_cache(tmp_path / "austen", _fake_texts())
    assert austen_texts().texts == _fake_texts()


def test_not_installed_falls_back_loudly_and_never_runs_apt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ran = _forbid_fetch(monkeypatch, tmp_path)
    with caplog.at_level(logging.WARNING, logger="lemo.assets.austen"):
        corpus = austen_texts(tmp_path)
    assert corpus.source == "fallback:pydoc_data"
    assert set(corpus.texts) == {"pydoc_a", "pydoc_b"}
    assert all(len(t) > 100_000 for t in corpus.texts.values())
    message = caplog.text
    assert "python -m lemo.assets.install" in message and "LEMO_AUSTEN_DIR" in message
    assert not (tmp_path / "austen").exists()  # a fallback is never cached: installing later fixes it
    assert not ran.exists()  # reading (and so training and evaluation) never runs apt-get


def test_importing_lemo_assets_loads_neither_the_installer_nor_rdata() -> None:
    code = "import sys, lemo.assets; print('lemo.assets.install' in sys.modules, 'rdata' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
