"""benchmarks/device/gpu_capability.sh stage / assemble / join: the GGUF's quarters, one a call (the tracked tree and
a bigger piece no longer fit a call's 64 MiB), joined by the call that carries the last; Austen unpacked by
`assemble` even where the GGUF is already there; a missing quarter named. `sha256sum` and `python3` are
stand-ins that record their arguments."""

import subprocess
import tarfile
from pathlib import Path

from tests.stand_ins import stand_ins

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device" / "gpu_capability.sh"
FAKE = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$FAKE_LOG"
"""


def _call(repo: Path, section: str, env: dict, carry: dict[str, bytes]) -> subprocess.CompletedProcess:
    """One device call: the repository holds only what this call carries under .stage."""
    for old in repo.glob(".stage/*/part0*"):
        old.unlink()
    for path, data in carry.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_bytes(data)
    env = {
        **env,
        "LEMO_STAGE": str(repo.parent / "stage"),
        "LEMO_SITE": str(repo / "site"),
        "OUT": str(repo / "o"),
    }
    env.pop("LEMO_LOCAL")
    return subprocess.run(["bash", str(SCRIPT), section], env=env, cwd=repo, capture_output=True, text=True)


def test_quarters_one_a_call_then_assemble_joins_them_and_unpacks_austen(tmp_path):
    env, log = stand_ins(tmp_path, FAKE, ("sha256sum", "python3"))
    repo, stage = tmp_path / "repo", tmp_path / "stage"
    repo.mkdir()
    for letter, i in (("a", 0), ("b", 1), ("c", 2)):
        got = _call(repo, "stage", env, {f".stage/{letter}/part0{i}": letter.encode() * 2})
        assert got.returncode == 0, got.stderr
    assert not (stage / "smollm2.gguf").exists()
    (tmp_path / "austen").mkdir()
    (tmp_path / "austen" / "emma.txt").write_text("Emma Woodhouse")
    with tarfile.open(repo / ".stage" / "austen.tgz", "w:gz") as tar:
        tar.add(tmp_path / "austen", arcname="austen")
    got = _call(repo, "assemble", env, {".stage/d/part03": b"dd"})
    assert got.returncode == 0, got.stderr
    assert (stage / "smollm2.gguf").read_bytes() == b"aabbccdd"
    assert (stage / "austen" / "emma.txt").read_text() == "Emma Woodhouse"
    # a later call carries no quarter: the GGUF is kept, checked again
    got = _call(repo, "assemble", env, {})
    assert got.returncode == 0, got.stderr
    assert (stage / "smollm2.gguf").read_bytes() == b"aabbccdd"
    calls = log.read_text().splitlines()
    assert sum(line.startswith("sha256sum") for line in calls) == 2
    assert sum(line.startswith("python3 -m pip install") for line in calls) == 1  # once a machine


def test_a_missing_quarter_is_named_and_join_installs_no_wheel(tmp_path):
    env, log = stand_ins(tmp_path, FAKE, ("sha256sum", "python3"))
    repo = tmp_path / "repo"
    repo.mkdir()
    _call(repo, "stage", env, {".stage/a/part00": b"aa"})
    log.unlink()  # the stage call may install the wheels; the join call must not
    got = _call(
        repo, "join", env, {".stage/d/part03": b"dd"}
    )  # the machine went back between calls: b, c lost
    assert got.returncode == 2 and "missing part01 part02" in got.stderr
    assert not (tmp_path / "stage" / "smollm2.gguf").exists()
    assert not log.exists() or "python3" not in log.read_text()
