"""Stand-in programs for the tests of the device scripts: each records its arguments and exits, so a script's shell
logic runs without a GPU or a model."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def stand_ins(tmp_path: Path, body: str, names: tuple[str, ...] = ("python",)) -> tuple[dict[str, str], Path]:
    """(environment with `names` on PATH as the script `body`, the log each call appends its arguments to)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        fake = bin_dir / name
        fake.write_text(body)
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.log"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(log), "LEMO_LOCAL": "1"}
    return env, log
