"""Checks that keep a run from losing or silently mixing work: existing runs, resume compatibility, bad paths.

All of them run before any model loads, so a mistake costs seconds, not a model load.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

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
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output-dir {out} is a file; pass a folder path (it is created when missing).")
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
        raise ValueError(
            f"--output-dir {out} cannot be written ({err.strerror or err}); fix its permissions or choose "
            "another --output-dir."
        ) from None
    return moved


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
    """Warnings for settings that run but cannot do what the user wants."""
    s = cfg.sparsity
    blocks = cfg.seq_len // s.block_size
    if cfg.sparse and blocks < s.sink_blocks + s.local_blocks + 1:
        log.warning(
            "--seq-len %d gives %d blocks of %d tokens, but %d sink + %d local blocks are always kept, so no "
            "token is eliminated; use --seq-len >= %d for token elimination to act.",
            cfg.seq_len, blocks, s.block_size, s.sink_blocks, s.local_blocks,
            (s.sink_blocks + s.local_blocks + 1) * s.block_size,
        )  # fmt: skip
    # `max_positions` is the loaded config's, which RoPE scaling has already multiplied by --rope-factor.
    if max_positions:
        for n in [cfg.seq_len, *cfg.eval_lengths]:
            if n > max_positions:
                log.warning(
                    "length %d exceeds the model's %d positions%s; quality past it is poor: extend the context "
                    "with --rope-scaling linear and a larger --rope-factor, or use shorter lengths.",
                    n, max_positions, f" (with RoPE x{cfg.rope_factor})" if cfg.rope_scaling else "",
                )  # fmt: skip
