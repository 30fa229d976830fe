"""Atomic, verified training checkpoints.

Layout of a checkpoint folder `dir`:

    dir/step-0000100/trainable.safetensors   the trainable parameters (LoRA adapters), CPU tensors
    dir/step-0000100/optimizer.pt            optimizer (and scheduler) state_dicts
    dir/step-0000100/meta.json               step, RNG states, user config, data seed, sha256 of each file
    dir/latest                               "step-0000100": the checkpoint to resume from

A save writes into a hidden temp folder and renames it into place, then rewrites `latest` the same way, so
a run killed mid-save (OOM killer, preemption) leaves the previous checkpoint intact; the half-written temp
folder is ignored on load and deleted by the next save (unless another live run holds the run folder's lock,
run_lock.py). Only rank 0 should save; FSDP2 runs (torchrun) write sharded checkpoints in the same folders
instead (distributed_checkpoint.py).
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import hashlib
import json
import logging
import os
import random
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from lemo.train.run_lock import held_by_another

logger = logging.getLogger(__name__)

TRAINABLE = "trainable.safetensors"
OPTIMIZER = "optimizer.pt"
META = "meta.json"
LATEST = "latest"
_TMP_PREFIX = ".tmp-"
_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint exists but cannot be trusted (hash mismatch, unreadable or missing file)."""


# ------------------------------------------------------------------------------------------------------ RNG


def _b64(t: torch.Tensor) -> str:
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def _unb64(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8)


def capture_rng_state() -> dict[str, Any]:
    """RNG states of python, numpy (when installed), torch CPU and every CUDA device, as JSON-able data."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {"python": [version, list(internal), gauss], "torch": _b64(torch.get_rng_state())}
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    except ImportError:
        pass
    if torch.cuda.is_available():
        state["cuda"] = [_b64(s) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by `capture_rng_state` (CUDA states only when CUDA is available here)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(_unb64(state["torch"]))
    if "numpy" in state:
        import numpy as np

        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        if len(cuda) != torch.cuda.device_count():
            logger.warning(
                "checkpoint has CUDA RNG states for %d devices, this machine has %d; restoring the first %d",
                len(cuda),
                torch.cuda.device_count(),
                min(len(cuda), torch.cuda.device_count()),
            )
        for i, s in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(_unb64(s), device=i)
    elif cuda:
        logger.warning("checkpoint has CUDA RNG states but CUDA is unavailable; GPU random draws will differ")


# ----------------------------------------------------------------------------------------------------- save


def save_checkpoint(dir: Path | str, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write `dir/step-{step:07d}/` atomically, point `dir/latest` at it, keep the newest `keep` checkpoints.

    `state` keys: "trainable" (dict[str, Tensor], required), "optimizer" and "scheduler" (state_dicts),
    "rng" (from `capture_rng_state`; captured now when absent), "config" (JSON-able dict), "data_seed" (int).
    Any other key must be JSON-able and comes back from `load_checkpoint` under "extra".
    Checkpoints with a higher step than `step` belong to an abandoned run and are removed.
    """
    if "trainable" not in state:
        raise ValueError('save_checkpoint needs state["trainable"]: a dict of the trainable tensors.')
    if keep < 1:
        raise ValueError(f"keep={keep} must be >= 1 (the checkpoint just written is always kept).")
    root = Path(dir)
    root.mkdir(parents=True, exist_ok=True)
    _remove_temp_dirs(root)
    name = _step_name(step)
    tmp = root / f"{_TMP_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
    try:
        _write(tmp, step, state)
    except Exception as err:  # torch.save and safetensors report a full disk in their own error types
        shutil.rmtree(tmp, ignore_errors=True)
        if _disk_full(err):
            raise CheckpointError(
                f"disk full while saving the step-{step} checkpoint in {root}; free space there or change "
                "--output-dir, then continue with --resume."
            ) from None
        raise
    final = root / name
    if (
        final.exists()
    ):  # saving the same step again (e.g. right after a resume): rename won't replace a folder
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_latest(root, name)
    _prune(root, step, keep)
    return final


def _disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    # torch.save's zip writer fails with "[enforce fail at inline_container.cc:...] ... file write failed"
    # or "unexpected pos"; safetensors with "StorageFull" / "No space left on device".
    return any(s in text for s in ("inline_container", "No space left", "StorageFull", "Disk quota"))


def _write(tmp: Path, step: int, state: dict[str, Any]) -> None:
    tmp.mkdir()
    # safetensors refuses non-contiguous or storage-sharing tensors; detached contiguous CPU copies are safe.
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state["trainable"].items()}
    save_file(tensors, str(tmp / TRAINABLE))
    torch.save({k: state[k] for k in ("optimizer", "scheduler") if k in state}, tmp / OPTIMIZER)
    known = {"trainable", "optimizer", "scheduler", "rng", "config", "data_seed"}
    meta = {
        "format": _FORMAT,
        "step": step,
        "saved_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "rng": state.get("rng") or capture_rng_state(),
        "config": state.get("config", {}),
        "data_seed": state.get("data_seed"),
        "extra": {k: v for k, v in state.items() if k not in known},
        "sha256": {f: _sha256(tmp / f) for f in (TRAINABLE, OPTIMIZER)},
    }
    (tmp / META).write_text(json.dumps(meta, indent=1, default=_json_default), encoding="utf-8")
    for f in (TRAINABLE, OPTIMIZER, META):
        _fsync(tmp / f)


def _step_name(step: int) -> str:
    return f"step-{step:07d}"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return str(obj)  # Paths, enums, dtypes: the config is a record, kept readable rather than refused


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    # Without fsync a power loss after the rename can leave a complete-looking folder of empty files.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_latest(root: Path, name: str) -> None:
    tmp = root / f"{_TMP_PREFIX}{LATEST}-{uuid.uuid4().hex[:8]}"
    tmp.write_text(name + "\n", encoding="utf-8")
    _fsync(tmp)
    os.replace(tmp, root / LATEST)
    if hasattr(os, "O_DIRECTORY"):  # make the renames themselves durable (POSIX only)
        _fsync(root)


def _remove_temp_dirs(root: Path) -> None:
    # A temp folder is only "left by an interrupted save" when no other live run holds the run folder: else it
    # may be that run's save in progress (run_lock.py). `lemo finetune` never gets here without the lock.
    holder = held_by_another(root.parent)
    if holder is not None:
        logger.warning(
            "leaving the temporary checkpoints in %s: the run folder is locked by %s, whose save may be in progress",
            root, holder.describe(),
        )  # fmt: skip
        return
    for p in root.glob(f"{_TMP_PREFIX}*"):
        logger.info("removing %s, left by an interrupted save", p)
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


def _complete_steps(root: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every checkpoint folder with a meta.json, oldest first."""
    found = []
    for p in root.glob("step-*"):
        suffix = p.name.removeprefix("step-")
        if p.is_dir() and suffix.isdigit() and (p / META).is_file():
            found.append((int(suffix), p))
    return sorted(found)


def _prune(root: Path, step: int, keep: int) -> None:
    steps = _complete_steps(root)
    for s, p in steps:
        if s > step:
            logger.warning(
                "removing %s: a newer step than the checkpoint just saved, from an abandoned run", p
            )
            shutil.rmtree(p)
    older = [p for s, p in steps if s < step]
    for p in older[: max(len(older) - (keep - 1), 0)]:
        shutil.rmtree(p)


# ----------------------------------------------------------------------------------------------------- load


def load_checkpoint(dir: Path | str) -> dict[str, Any] | None:
    """Load the checkpoint `dir/latest` names (else the newest complete one); None when there is none.

    Returns a dict with "step", "trainable" (CPU tensors), "optimizer", "scheduler" (when saved), "rng",
    "config", "data_seed", "extra" and "path". Every file is checked against its sha256 in meta.json.

    Raises:
        CheckpointError: a file is missing, unreadable or does not match its hash.
    """
    root = Path(dir)
    if not root.is_dir():
        return None
    folder = _resolve(root)
    if folder is None:
        return None
    meta_path = folder / META
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        step, hashes = int(meta["step"]), dict(meta["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise _corrupt(meta_path, folder, f"unreadable ({err})") from err
    if meta.get("sharded"):  # written by an FSDP2 run (distributed_checkpoint.py)
        n = meta.get("world_size")
        raise ValueError(
            f"the checkpoint {folder} was written by {n} processes under torchrun; resume it with "
            f"torchrun --nproc-per-node {n} -m lemo.cli finetune ... --resume, or start a new run in another "
            "--output-dir."
        )
    for f in (TRAINABLE, OPTIMIZER):
        path = folder / f
        if not path.is_file():
            raise _corrupt(path, folder, "missing")
        if _sha256(path) != hashes.get(f):
            raise _corrupt(path, folder, "corrupt (sha256 does not match meta.json)")
    try:
        trainable = load_file(str(folder / TRAINABLE))
    except Exception as err:  # safetensors raises its own SafetensorError for malformed headers
        raise _corrupt(folder / TRAINABLE, folder, f"unreadable ({err})") from err
    try:
        # weights_only: a checkpoint copied from elsewhere cannot run code on load.
        opt = torch.load(folder / OPTIMIZER, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise _corrupt(folder / OPTIMIZER, folder, f"unreadable ({err})") from err
    return {
        "step": step,
        "trainable": trainable,
        **opt,
        "rng": meta.get("rng"),
        "config": meta.get("config", {}),
        "data_seed": meta.get("data_seed"),
        "extra": meta.get("extra", {}),
        "path": folder,
    }


def _resolve(root: Path) -> Path | None:
    latest = root / LATEST
    if latest.is_file():
        folder = root / latest.read_text(encoding="utf-8").strip()
        if folder.is_dir() and folder.name.startswith("step-"):
            return folder
        logger.warning(
            "%s names %s, which does not exist; using the newest complete checkpoint", latest, folder
        )
    steps = _complete_steps(root)
    return steps[-1][1] if steps else None


def _corrupt(path: Path, folder: Path, what: str) -> CheckpointError:
    return CheckpointError(
        f"{path} is {what}; delete {folder} to resume from the previous checkpoint, "
        "or start fresh without --resume."
    )
