"""`--report-to`: the per-step metrics of metrics.jsonl also go to TensorBoard and/or Weights & Biases.

Both are optional packages, checked when the config is built (before any model loads), so a missing one is an
error naming the install command rather than a traceback half way into a run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lemo.config.finetune import check_report_to


class Reporters:
    """Scalars of each step's record to every reporter asked for; the records are metrics.jsonl's."""

    def __init__(self, names: Sequence[str], out: Path, config: dict[str, Any]) -> None:
        check_report_to(names)
        self._tb = self._wandb = None
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package (checked above)

            self._tb = SummaryWriter(log_dir=str(out / "tensorboard"))
        if "wandb" in names:
            import wandb

            # resume="allow" with the output dir's name: a resumed lemo run continues the same wandb run.
            self._wandb = wandb.init(
                project="lemo", name=out.name, id=out.name, dir=str(out), config=config, resume="allow"
            )

    def log(self, record: dict[str, Any], step: int) -> None:
        scalars = {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
        if self._tb is not None:
            for key, value in scalars.items():
                self._tb.add_scalar(f"train/{key}", value, step)
        if self._wandb is not None:
            self._wandb.log({f"train/{k}": v for k, v in scalars.items()}, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


class Silent:
    """Metrics and reporters on ranks other than 0: they write nothing."""

    def write(self, *_: Any) -> None: ...
    def log(self, *_: Any) -> None: ...
    def close(self) -> None: ...
