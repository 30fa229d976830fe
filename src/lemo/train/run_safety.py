"""Checks that keep a run from losing or silently mixing work: existing runs, the output folder claimed for the
run's life (`OutputClaim`, with run_lock.py), resume compatibility, bad paths.

All of them run before any model loads, so a mistake costs seconds, not a model load.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from lemo.train.run_lock import LOCK_NAME, RunLock

log = logging.getLogger(__name__)

RUN_MARKERS = ("checkpoints", "adapter", "config.yaml")
# Fields that change reporting or bookkeeping, never the trained weights; everything else must match on resume.
# `device` may change so a run can move machines (dtype, which decides the numerics, may not).
RESUMABLE_CHANGES = frozenset(
    {
        "progress",
        "save_every",
        "output_dir",
        "eval_lengths",
        "eval_windows",
        "resume",
        "overwrite",
        "device",
        "report_to",
        "dist_timeout",
        "nproc",  # the world-size check of a sharded checkpoint guards what matters
        "plan",
        "liger",  # fused kernels: the same computation, rounded differently (it resolves per machine when unset)
        # memory placement only: offload and tiling change where activations live, not one number
        "sparsity.offload",
        "sparsity.tile_tokens",
        "sparsity.tile_attention",
    }
)


def is_run(out: Path) -> bool:
    return any((out / m).exists() for m in RUN_MARKERS)


def prepare_output_dir(out: Path, *, resume: bool, overwrite: bool) -> Path | None:
    """Create `out` and check it can be written; refuse an existing run unless resuming or overwriting.

    With `overwrite` (and no `resume`) an existing run is renamed to `<out>.old-<timestamp>`, whose path is
    returned; nothing is deleted.
    """
    _refuse_file(out)
    moved = None
    if out.is_dir() and is_run(out) and not resume:
        if not overwrite:
            found = ", ".join(m for m in RUN_MARKERS if (out / m).exists())
            raise ValueError(
                f"--output-dir {out} already holds a run ({found}); add --resume to continue it, "
                "--overwrite to move it aside and start afresh, or choose another --output-dir."
            )
        moved = out.with_name(f"{out.name}.old-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
        while moved.exists():  # two overwrites in one second
            moved = moved.with_name(f"{moved.name}-{uuid.uuid4().hex[:4]}")
        os.replace(out, moved)
        log.warning("--overwrite: moved the previous run in %s to %s", out, moved)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise _unwritable(out, err) from None
    return moved


def _refuse_file(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output-dir {out} is a file; pass a folder path (it is created when missing).")


def _unwritable(out: Path, err: OSError) -> ValueError:
    return ValueError(
        f"--output-dir {out} cannot be written ({err.strerror or err}); fix its permissions or choose "
        "another --output-dir."
    )


def _missing_dirs(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist yet, outermost first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing[::-1]


class OutputClaim:
    """An --output-dir held for one run's life: locked (run_lock.py), then checked by `prepare_output_dir`.

    `release` unlocks it, and removes the folders this claim created while they are still empty: a run that
    fails before writing anything leaves no empty folder behind. Only `os.rmdir` removes them, which refuses a
    folder with anything in it, so nothing that held a file is ever deleted.
    """

    def __init__(self, out: Path, *, resume: bool, overwrite: bool) -> None:
        self.out = Path(out)
        self.resume = resume
        self.overwrite = overwrite
        self.lock = RunLock(self.out)
        self._created: list[Path] = []

    def acquire(self) -> Path | None:
        """Lock and check the folder; returns where --overwrite moved a previous run (else None)."""
        _refuse_file(self.out)
        self._created = _missing_dirs(self.out)
        try:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
                self.lock.acquire()
            except OSError as err:
                raise _unwritable(self.out, err) from None
            # Under the lock, so a second run cannot pass this check while the first one is starting.
            moved = prepare_output_dir(self.out, resume=self.resume, overwrite=self.overwrite)
            if moved is not None:
                self._relock(moved)
        except BaseException:
            self.release()
            raise
        return moved

    def _relock(self, moved: Path) -> None:
        # The lock file went aside with the previous run; lock the fresh folder, then drop the moved lock.
        old, self.lock = self.lock, RunLock(self.out)
        old.path = moved / LOCK_NAME
        self._created.append(self.out)
        try:
            self.lock.acquire()
        finally:
            old.release()

    def release(self) -> None:
        self.lock.release()
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:  # not empty (the run wrote something), or gone: keep it and its parents
                break
        self._created = []


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
    return out


def check_resume_compatible(saved: dict[str, Any], new: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Refuse a resume whose config changes what was trained (lr, seq_len, sparsity, LoRA rank, ...).

    `saved` is the checkpoint's config; keys it lacks (a checkpoint from an older lemo) count as `defaults`.
    Only `steps` may rise, and the fields in RESUMABLE_CHANGES may change freely.
    """
    old = {**_flat(defaults), **_flat(saved)}
    changed = []
    for key, value in _flat(new).items():
        before = old.get(key, value)
        if key in RESUMABLE_CHANGES or before == value:
            continue
        if key in ("model", "dtype") and before in (None, "auto"):
            continue  # a checkpoint from before lemo recorded the resolved model and dtype
        if key == "steps" and isinstance(before, int) and value >= before:
            continue
        changed.append(f"{key}: {before!r} -> {value!r}")
    if changed:
        raise ValueError(
            "--resume would continue the checkpoint with a different config: "
            + "; ".join(changed)
            + ". Drop those changes (only --steps may rise, and progress, save-every, eval options may "
            "change), or start a new run with another --output-dir or --overwrite."
        )


def warn_on_useless_lengths(cfg: Any, max_positions: int | None) -> None:
    """Warnings for lengths that run but cannot do what the user wants (checks.check_seq_len refuses rows too
    short for token elimination)."""
    # `max_positions` is the loaded config's, which RoPE scaling has already multiplied by --rope-factor.
    if max_positions:
        for n in [cfg.seq_len, *cfg.eval_lengths]:
            if n > max_positions:
                log.warning(
                    "length %d exceeds the model's %d positions%s; quality past it is poor: extend the context "
                    "with --rope-scaling linear and a larger --rope-factor, or use shorter lengths.",
                    n, max_positions, f" (with RoPE x{cfg.rope_factor})" if cfg.rope_scaling else "",
                )  # fmt: skip
