"""Pure-stdlib reader for R lazy-load databases (``.rdx`` + ``.rdb``) and R's XDR serialization.

R packages ship their data sets as a lazy-load database: ``<stem>.rdx`` is a gzip-compressed serialized
named list whose ``variables`` entry maps each object name to an ``(offset, length)`` pair in
``<stem>.rdb``; each blob there is a 4-byte big-endian uncompressed length followed by a compressed R
serialization of the object. Reading it ourselves means the Jane Austen corpus needs no R install.

Only the subset of R's serialization format that plain data uses is implemented (vectors, pairlists,
symbols, a few ALTREP compact forms); anything else raises ``ValueError`` naming the type code.
Reference: R's ``src/main/serialize.c`` and the "R Internals" manual, section 1.8.
"""

import bz2
import gzip
import lzma
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RObject", "RSymbol", "read_lazyload_db", "read_rdata_strings", "unserialize"]

# SEXP type codes (R Internals 1.1) and serialization pseudo-types (serialize.c).
SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 1, 2, 3, 4, 5, 6
CHARSXP, LGLSXP, INTSXP, REALSXP, CPLXSXP, STRSXP = 9, 10, 13, 14, 15, 16
DOTSXP, VECSXP, EXPRSXP, RAWSXP, S4SXP = 17, 19, 20, 24, 25
ALTREP_SXP, ATTRLISTSXP, ATTRLANGSXP = 238, 239, 240
BASEENV_SXP, EMPTYENV_SXP, MISSINGARG_SXP, UNBOUNDVALUE_SXP, GLOBALENV_SXP = 241, 242, 251, 252, 253
NILVALUE_SXP, REFSXP = 254, 255

_PAIRLIST_TYPES = {LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP, ATTRLISTSXP, ATTRLANGSXP}
_SINGLETONS = {BASEENV_SXP, EMPTYENV_SXP, MISSINGARG_SXP, UNBOUNDVALUE_SXP, GLOBALENV_SXP}
_NA_INTEGER = -(2**31)
# CHARSXP "levels" bits that say how the bytes are encoded.
_LATIN1_MASK, _UTF8_MASK, _ASCII_MASK = 1 << 2, 1 << 3, 1 << 6


@dataclass(frozen=True)
class RSymbol:
    """An R symbol (SYMSXP), e.g. an attribute or list tag name."""

    name: str


@dataclass
class RObject:
    """One deserialized R value.

    ``value`` is a Python list for vectors (``None`` for NA), a list of ``(tag, value)`` pairs for
    pairlists, and ``None`` for ``NULL`` and the special environments.
    """

    rtype: int
    value: Any
    attributes: dict[str, "RObject"] = field(default_factory=dict)

    def names(self) -> list[str] | None:
        """The ``names`` attribute as a list of strings, or ``None`` when absent."""
        names = self.attributes.get("names")
        return None if names is None else [n or "" for n in names.value]


class _XdrReader:
    """Reads one XDR (big-endian) R serialization stream, header included."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        # R back-references symbols (and environments) by their order of first appearance.
        self.refs: list[Any] = []
        self.native_encoding = "utf-8"

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"truncated R serialization: wanted {n} bytes at offset {self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def _int(self) -> int:
        return struct.unpack(">i", self._take(4))[0]

    def _length(self) -> int:
        n = self._int()
        if n == -1:  # long vector: the length follows as two 32-bit halves
            upper, lower = struct.unpack(">II", self._take(8))
            n = (upper << 32) | lower
        return n

    def read_header(self) -> None:
        fmt = self._take(2)
        if fmt != b"X\n":
            raise ValueError(f"unsupported R serialization format {fmt!r}: only XDR ('X\\n') is supported")
        version = self._int()
        self._int()  # R version that wrote the stream
        self._int()  # minimal R version able to read it
        if version == 3:
            self.native_encoding = self._take(self._int()).decode("ascii", "replace")
        elif version != 2:
            raise ValueError(f"unsupported R serialization version {version} (supported: 2, 3)")

    def _attributes(self) -> dict[str, RObject]:
        pairs = self.read_item()
        return {tag or "": value for tag, value in (pairs.value or [])}

    def read_item(self) -> Any:
        flags = self._int()
        rtype = flags & 0xFF
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))

        if rtype == NILVALUE_SXP or rtype in _SINGLETONS:
            return RObject(rtype, None)
        if rtype == REFSXP:
            index = flags >> 8 or self._int()  # 0 means the index did not fit in the flags
            return self.refs[index - 1]
        if rtype == SYMSXP:
            symbol = RSymbol(self.read_item().value or "")
            self.refs.append(symbol)
            return symbol
        if rtype == CHARSXP:
            return RObject(CHARSXP, self._charsxp(flags >> 12))
        if rtype in _PAIRLIST_TYPES:
            return self._pairlist(rtype, has_attr, has_tag)
        if rtype == ALTREP_SXP:
            return self._altrep()
        if rtype == S4SXP:
            return RObject(rtype, None, self._attributes() if has_attr else {})

        value = self._vector(rtype)
        return RObject(rtype, value, self._attributes() if has_attr else {})

    def _charsxp(self, levels: int) -> str | None:
        n = self._int()
        if n == -1:
            return None  # NA_character_
        raw = self._take(n)
        if levels & _LATIN1_MASK:
            return raw.decode("latin-1")
        if levels & (_UTF8_MASK | _ASCII_MASK):
            return raw.decode("utf-8", "replace")
        # Unmarked strings are in the writer's native encoding (recorded only by version 3 streams).
        try:
            return raw.decode(self.native_encoding, "replace")
        except LookupError:
            return raw.decode("utf-8", "replace")

    def _pairlist(self, rtype: int, has_attr: bool, has_tag: bool) -> RObject:
        # Pairlists are serialized as nested cons cells; walk the CDR chain iteratively so that
        # long lists cannot hit Python's recursion limit.
        attributes = self._attributes() if has_attr else {}
        items: list[tuple[str | None, Any]] = []
        while True:
            tag = self.read_item() if has_tag else None
            items.append((tag.name if isinstance(tag, RSymbol) else None, self.read_item()))
            flags = self._int()
            if (flags & 0xFF) not in _PAIRLIST_TYPES:
                self.pos -= 4  # not a cons cell: let read_item() parse the terminator (usually NULL)
                self.read_item()
                break
            if flags & (1 << 9):
                self._attributes()  # attributes on inner cells carry no meaning for data
            has_tag = bool(flags & (1 << 10))
        return RObject(rtype, items, attributes)

    def _vector(self, rtype: int) -> list[Any]:
        if rtype in (LGLSXP, INTSXP):
            n = self._length()
            ints = struct.unpack(f">{n}i", self._take(4 * n))
            if rtype == LGLSXP:
                return [None if v == _NA_INTEGER else bool(v) for v in ints]
            return [None if v == _NA_INTEGER else v for v in ints]
        if rtype == REALSXP:
            n = self._length()
            return list(struct.unpack(f">{n}d", self._take(8 * n)))
        if rtype == CPLXSXP:
            n = self._length()
            parts = struct.unpack(f">{2 * n}d", self._take(16 * n))
            return [complex(parts[i], parts[i + 1]) for i in range(0, 2 * n, 2)]
        if rtype == STRSXP:
            return [self.read_item().value for _ in range(self._length())]
        if rtype in (VECSXP, EXPRSXP):
            return [self.read_item() for _ in range(self._length())]
        if rtype == RAWSXP:
            return list(self._take(self._length()))
        raise ValueError(f"unsupported R type code {rtype} in serialization at offset {self.pos - 4}")

    def _altrep(self) -> RObject:
        # ALTREP (R >= 3.5, version-3 streams): info = (class, package, type), then state, then attributes.
        info = self.read_item()
        state = self.read_item()
        attributes = self._attributes()
        class_name = info.value[0][1].name if info.value else "?"
        if class_name in ("compact_intseq", "compact_realseq"):
            n, start, step = state.value
            rtype = INTSXP if class_name == "compact_intseq" else REALSXP
            cast = int if rtype == INTSXP else float
            return RObject(rtype, [cast(start + i * step) for i in range(int(n))], attributes)
        if class_name.startswith("wrap_"):
            # Wrapper ALTREPs hold the plain vector as the first element of their state pairlist.
            inner = state.value[0][1]
            return RObject(inner.rtype, inner.value, attributes or inner.attributes)
        raise ValueError(f"unsupported R ALTREP class {class_name!r} (type code {ALTREP_SXP})")


def unserialize(data: bytes) -> RObject:
    """Deserialize one R XDR serialization stream (versions 2 and 3)."""
    reader = _XdrReader(data)
    reader.read_header()
    return reader.read_item()


def _decompress_blob(blob: bytes, compressed: int) -> bytes:
    """Decompress one ``.rdb`` entry; ``compressed`` is the index's ``compressed`` flag."""
    expected = struct.unpack(">I", blob[:4])[0]
    if compressed in (0, 1):  # FALSE / TRUE: a bare zlib stream after the length
        out = zlib.decompress(blob[4:]) if compressed else blob[4:]
    else:  # 2 (bzip2) / 3 (xz): one type byte tells what was actually used for this blob
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


def read_lazyload_db(rdb_stem: Path) -> dict[str, RObject]:
    """Read every object of an R lazy-load database ``<stem>.rdx`` + ``<stem>.rdb``."""
    stem = Path(rdb_stem)
    if stem.suffix in (".rdb", ".rdx"):
        stem = stem.with_suffix("")
    index = unserialize(gzip.decompress(stem.with_suffix(".rdx").read_bytes()))
    entries = dict(zip(index.names() or [], index.value))
    if "variables" not in entries:
        raise ValueError(f"{stem}.rdx is not a lazy-load index (no 'variables' entry)")
    flag = entries["compressed"].value[0] if "compressed" in entries else True
    compressed = int(flag) if flag is not None else 1

    db = stem.with_suffix(".rdb").read_bytes()
    variables = entries["variables"]
    objects: dict[str, RObject] = {}
    for name, where in zip(variables.names() or [], variables.value):
        offset, length = (int(v) for v in where.value)
        objects[name] = unserialize(_decompress_blob(db[offset : offset + length], compressed))
    return objects


def read_rdata_strings(rdb_stem: Path) -> dict[str, list[str]]:
    """Read a lazy-load database whose objects are all character vectors.

    Args:
        rdb_stem: path without extension, e.g. ``.../janeaustenr/data/Rdata`` for
            ``Rdata.rdx`` + ``Rdata.rdb`` (a ``.rdb``/``.rdx`` suffix is tolerated).

    Returns:
        object name -> its strings, in order; NA strings become ``""``.

    Raises:
        ValueError: on an unsupported serialization feature or an object that is not a character vector.
    """
    out: dict[str, list[str]] = {}
    for name, obj in read_lazyload_db(rdb_stem).items():
        if obj.rtype != STRSXP:
            raise ValueError(f"R object {name!r} has type code {obj.rtype}, not a character vector (16)")
        out[name] = [s if s is not None else "" for s in obj.value]
    return out
