"""R lazy-load databases (``<stem>.rdx`` + ``<stem>.rdb``), read with PyPI's ``rdata``; only the container is ours.

R packages ship their data sets as a lazy-load database: ``<stem>.rdx`` is a gzip-compressed serialized named list
whose ``variables`` entry maps each object name to an ``(offset, length)`` pair in ``<stem>.rdb``, and each blob
there is a 4-byte big-endian uncompressed length followed by a compressed R serialization of one object.

``rdata`` parses and converts R's serialization (XDR versions 2 and 3, string encodings, ALTREP forms), and the
gzip-compressed index is such a serialization, so it reads the ``.rdx`` as it is. What ``rdata`` does not know is
the ``.rdb`` container: slicing a blob by the index's offsets, its length header and its per-blob compression
(bare zlib, or a type byte before zlib/bzip2/xz data): those ~30 lines are the hand-written part here.

Install cost, measured 2026-12 (Python 3.11, Linux x86-64): ``pip install rdata`` into a fresh venv brings
rdata 1.1, xarray, pandas, numpy, python-dateutil, tzdata, packaging and typing_extensions: 179 MB of
site-packages in 11 s (pandas 84 MB, numpy 45 MB, xarray 18 MB, rdata 3 MB); ``import rdata`` takes 1.4 s,
and reading the six novels 2.0 s in all (the hand-written reader this replaced: 0.17 s, same strings).
lemo already needs numpy, and the ``trl`` extra already brings pandas, so in a dev install the addition is
xarray + rdata (21 MB). That is heavy for reading one text corpus once, so ``rdata`` is not a core dependency:
it is the ``austen`` extra (``pip install 'lemo[austen]'``, also part of ``dev``), and only the asset installer
(``python -m lemo.assets.install``) imports it. Without it the installer says how to get it, and the corpus falls
back as ``lemo.assets.austen`` describes; no hand-written copy of R's serialization format is kept as a second
path.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

__all__ = ["read_lazyload_db", "read_rdata_strings"]

INSTALL_HINT = "pip install 'lemo[austen]' (or: pip install rdata)"
_STRSXP = 16  # R's type code of a character vector


def _rdata() -> Any:
    try:
        import rdata  # heavy (pandas, xarray): imported only when a database is read
    except ImportError as exc:
        raise ImportError(f"reading R data needs the rdata package: {INSTALL_HINT}") from exc
    return rdata


def _parse(data: bytes, what: str) -> Any:
    """One R serialization (optionally gzip/bzip2/xz-compressed) -> rdata's parsed object tree."""
    rdata = _rdata()
    try:
        with warnings.catch_warnings():
            # A bare stream has no file magic; rdata warns that it assumes RDS, which is exactly what it is.
            warnings.simplefilter("ignore", UserWarning)
            return rdata.parser.parse_data(data, extension=".rds")
    except Exception as exc:  # rdata raises IndexError/ValueError/... on what it does not support
        raise ValueError(
            f"could not parse {what} as an R serialization ({type(exc).__name__}: {exc})"
        ) from exc


def _decompress_blob(blob: bytes, compressed: int) -> bytes:
    """Decompress one ``.rdb`` entry; ``compressed`` is the index's ``compressed`` flag (R's makeLazyLoadDB)."""
    expected = struct.unpack(">I", blob[:4])[0]
    if compressed in (0, 1):  # FALSE / TRUE: the data, or a bare zlib stream, after the length
        out = zlib.decompress(blob[4:]) if compressed else blob[4:]
    else:  # 2 (bzip2) / 3 (xz): one type byte says what was actually used for this blob
        kind, payload = blob[4:5], blob[5:]
        decoders = {b"Z": zlib.decompress, b"2": bz2.decompress, b"0": bytes}
        if kind == b"X":
            out = lzma.decompress(payload, format=lzma.FORMAT_XZ)
        elif kind in decoders:
            out = decoders[kind](payload)
        else:
            raise ValueError(f"unknown lazy-load compression type byte {kind!r}")
    if len(out) != expected:
        raise ValueError(f"lazy-load blob decompressed to {len(out)} bytes, index says {expected}")
    return out


def _stem(path: Path | str) -> Path:
    stem = Path(path)
    return stem.with_suffix("") if stem.suffix in (".rdb", ".rdx") else stem


def read_lazyload_db(rdb_stem: Path | str) -> dict[str, Any]:
    """Every object of the lazy-load database ``<stem>.rdx`` + ``<stem>.rdb``, parsed but not converted.

    Returns:
        object name -> rdata's parsed object (``.info.type`` is the R type; ``rdata.conversion.convert`` turns it
        into Python values).
    """
    rdata = _rdata()
    stem = _stem(rdb_stem)
    index = rdata.conversion.convert(_parse(stem.with_suffix(".rdx").read_bytes(), f"{stem}.rdx"))
    if not isinstance(index, dict) or "variables" not in index:
        raise ValueError(f"{stem}.rdx is not a lazy-load index (no 'variables' entry)")
    flag = index.get("compressed", [True])
    compressed = int(flag[0]) if len(flag) else 1
    db = stem.with_suffix(".rdb").read_bytes()
    objects: dict[str, Any] = {}
    for name, where in index["variables"].items():
        offset, length = (int(v) for v in where)
        blob = _decompress_blob(db[offset : offset + length], compressed)
        objects[str(name)] = _parse(blob, f"object {str(name)!r} of {stem}.rdb").object
    return objects


def read_rdata_strings(rdb_stem: Path | str) -> dict[str, list[str]]:
    """Read a lazy-load database whose objects are all character vectors.

    Args:
        rdb_stem: path without extension, e.g. ``.../janeaustenr/data/Rdata`` for
            ``Rdata.rdx`` + ``Rdata.rdb`` (a ``.rdb``/``.rdx`` suffix is tolerated).

    Returns:
        object name -> its strings, in order; NA strings become ``""``.

    Raises:
        ValueError: on a serialization ``rdata`` cannot parse or an object that is not a character vector.
        ImportError: ``rdata`` is not installed (the message says how to install it).
    """
    convert = _rdata().conversion.convert
    out: dict[str, list[str]] = {}
    for name, obj in read_lazyload_db(rdb_stem).items():
        rtype = obj.info.type.value
        if rtype != _STRSXP:  # checked before converting: an empty vector converts to a typeless array
            raise ValueError(f"R object {name!r} has type code {rtype}, not a character vector ({_STRSXP})")
        out[name] = [str(s) if s is not None else "" for s in convert(obj)]
    return out
