"""`lemo finetune --nproc N`: the same run, started under torchrun on this machine.

For users who would rather not type `torchrun --standalone --nproc-per-node N -m lemo finetune ...`: the resolved
config goes to a temporary YAML file, and torchrun starts N ranks on it. Multi-node runs still go through
torchrun itself (docs/distributed.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from lemo.train.distributed import launched_world_size


def wants_launch(cfg: Any) -> bool:
    """Whether this process should start torchrun (--nproc above 1, not already under it); an --nproc that
    disagrees with the torchrun job this process is in is an error."""
    world = launched_world_size()
    if world > 1:
        if cfg.nproc not in (1, world):
            raise ValueError(
                f"--nproc {cfg.nproc} but torchrun started {world} ranks; under torchrun leave --nproc out "
                "(--nproc-per-node sets the count)."
            )
        return False
    return cfg.nproc > 1


def torchrun_command(config_file: Path, nproc: int) -> list[str]:
    """The torchrun line for `config_file` (this interpreter, so the same environment and the same lemo)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)]
    return [*launcher, "-m", "lemo", "finetune", "--config", str(config_file)]


def launch(cfg: Any) -> Any:  # FinetuneResult (loop imports this module)
    """Run `cfg` on cfg.nproc ranks under torchrun and wait; the FinetuneResult read from its output folder."""
    from lemo.train.loop import FinetuneResult

    with tempfile.TemporaryDirectory(prefix="lemo-nproc-") as tmp:
        path = Path(tmp) / "config.yaml"
        cfg.save_yaml(path)
        proc = subprocess.Popen(torchrun_command(path, cfg.nproc), env={**os.environ})
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            # The terminal's Ctrl-C reached torchrun's ranks too: they save a checkpoint and stop; wait for that.
            code = proc.wait()
    if code == 130:  # Ctrl-C: rank 0 has printed the checkpoint it saved and how to continue
        raise KeyboardInterrupt
    if code != 0:
        raise RuntimeError(
            f"the {cfg.nproc}-rank run under torchrun stopped with exit code {code}; the ranks' messages are above."
        )
    out = Path(cfg.output_dir)
    metrics = out / "metrics.jsonl"
    lines = metrics.read_text().splitlines() if metrics.is_file() else []
    losses = [json.loads(line)["loss"] for line in lines if '"loss"' in line]
    return FinetuneResult(output_dir=out, adapter_dir=out / "adapter", losses=losses)
