"""benchmarks/device/gpu_capability.sh join / assemble: the GGUF joined from its carried thirds in a call that carries
no wheel (the tree and the last third fill a call), then Austen unpacked by the next call's `assemble`, though the
GGUF is already there. `sha256sum` and `python3` are stand-ins that record their arguments."""

import subprocess
import tarfile
from pathlib import Path

from tests.stand_ins import stand_ins

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "device" / "gpu_capability.sh"
FAKE = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$FAKE_LOG"
"""


def _call(repo: Path, stage: Path, section: str, env: dict) -> subprocess.CompletedProcess:
    env = {**env, "LEMO_STAGE": str(stage), "LEMO_SITE": str(repo / "site"), "OUT": str(repo / "out")}
    env.pop("LEMO_LOCAL")
    return subprocess.run(["bash", str(SCRIPT), section], env=env, cwd=repo, capture_output=True, text=True)


def test_join_without_wheels_then_assemble_unpacks_austen(tmp_path):
    env, log = stand_ins(tmp_path, FAKE, ("sha256sum", "python3"))
    stage, repo = tmp_path / "stage", tmp_path / "repo"
    stage.mkdir()
    (stage / "part00").write_bytes(b"ab")
    (stage / "part01").write_bytes(b"cd")
    (repo / ".stage" / "c").mkdir(parents=True)
    (repo / ".stage" / "c" / "part02").write_bytes(b"ef")
    got = _call(repo, stage, "join", env)
    assert got.returncode == 0, got.stderr
    assert (stage / "smollm2.gguf").read_bytes() == b"abcdef"
    assert not any(line.startswith("python3") for line in log.read_text().splitlines())  # no wheel to install
    # the next call carries Austen (packed) and the wheels, not the last third
    (repo / ".stage" / "c" / "part02").unlink()
    (tmp_path / "austen").mkdir()
    (tmp_path / "austen" / "emma.txt").write_text("Emma Woodhouse")
    with tarfile.open(repo / ".stage" / "austen.tgz", "w:gz") as tar:
        tar.add(tmp_path / "austen", arcname="austen")
    got = _call(repo, stage, "assemble", env)
    assert got.returncode == 0, got.stderr
    assert (stage / "austen" / "emma.txt").read_text() == "Emma Woodhouse"
    assert (stage / "smollm2.gguf").read_bytes() == b"abcdef"  # kept, not joined again from a missing third
    calls = log.read_text().splitlines()
    assert sum(line.startswith("sha256sum") for line in calls) == 2  # checked by both calls
    assert any(line.startswith("python3 -m pip install") for line in calls)
