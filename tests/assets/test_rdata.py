"""R lazy-load reader: round trips through a small writer of R's XDR serialization, plus error paths."""

import gzip
import lzma
import struct
import zlib
from pathlib import Path

import pytest

from lemo.assets.rdata import read_lazyload_db, read_rdata_strings, unserialize

NIL, REF = 254, 255
UTF8, ASCII, LATIN1 = 1 << 3, 1 << 6, 1 << 2


def _flags(rtype: int, attr: bool = False, tag: bool = False, levels: int = 0) -> int:
    return rtype | (attr << 9) | (tag << 10) | (levels << 12)


class RWriter:
    """Just enough of R's serialize() (XDR) to write named lists of character/integer/logical vectors."""

    def __init__(self, version: int = 3) -> None:
        self.buf = bytearray(b"X\n")
        self.symbols: list[str] = []
        self.int(version)
        self.int(0x040201)  # written by R 4.2.1
        self.int(0x030500 if version == 3 else 0x020300)
        if version == 3:
            self.int(5)
            self.buf += b"UTF-8"

    def int(self, v: int) -> None:
        self.buf += struct.pack(">i", v)

    def charsxp(self, s: str | None, latin1: bool = False) -> None:
        if s is None:
            self.int(_flags(9))
            self.int(-1)
            return
        raw = s.encode("latin-1" if latin1 else "utf-8")
        self.int(_flags(9, levels=LATIN1 if latin1 else (ASCII if s.isascii() else UTF8)))
        self.int(len(raw))
        self.buf += raw

    def symbol(self, name: str) -> None:
        if name in self.symbols:  # R writes a back-reference for every repeated symbol
            self.int((self.symbols.index(name) + 1) << 8 | REF)
            return
        self.symbols.append(name)
        self.int(1)
        self.charsxp(name)

    def attributes(self, attrs: dict[str, list[str]]) -> None:
        for tag, names in attrs.items():
            self.int(_flags(2, tag=True))
            self.symbol(tag)
            self.strsxp(names)
        self.int(NIL)

    def strsxp(self, strings: list[str | None], names: list[str] | None = None) -> None:
        self.int(_flags(16, attr=names is not None))
        self.int(len(strings))
        for s in strings:
            self.charsxp(s)
        if names is not None:
            self.attributes({"names": names})

    def ints(self, values: list[int], logical: bool = False) -> None:
        self.int(_flags(10 if logical else 13))
        self.int(len(values))
        for v in values:
            self.int(v)

    def vecsxp_header(self, n: int, named: bool) -> None:
        self.int(_flags(19, attr=named))
        self.int(n)


def _blob(data: bytes, compressed: int) -> bytes:
    head = struct.pack(">I", len(data))
    if compressed == 1:
        return head + zlib.compress(data)
    return head + b"X" + lzma.compress(data, format=lzma.FORMAT_XZ)  # compressed=3 (xz)


def write_lazyload_db(stem: Path, objects: dict, version: int = 3, compressed: int = 1) -> None:
    """Write ``<stem>.rdb``/``.rdx`` like R's makeLazyLoadDB; values are string lists or raw bytes."""
    rdb, spans = bytearray(), []
    for value in objects.values():
        if isinstance(value, bytes):
            data = value
        else:
            w = RWriter(version)
            w.strsxp(value)
            data = bytes(w.buf)
        blob = _blob(data, compressed)
        spans.append((len(rdb), len(blob)))
        rdb += blob
    idx = RWriter(version)
    idx.vecsxp_header(3, named=True)
    idx.vecsxp_header(len(objects), named=True)  # variables
    for offset, length in spans:
        idx.ints([offset, length])
    idx.attributes({"names": list(objects)})
    idx.vecsxp_header(0, named=True)  # references
    idx.attributes({"names": []})
    if compressed == 1:
        idx.ints([1], logical=True)
    else:
        idx.ints([compressed])
    idx.attributes({"names": ["variables", "references", "compressed"]})
    stem.with_suffix(".rdb").write_bytes(bytes(rdb))
    stem.with_suffix(".rdx").write_bytes(gzip.compress(bytes(idx.buf)))


NOVELS = {
    "emma": ["EMMA", "", "Emma Woodhouse, handsome, clever, and rich,", "FINIS"],
    "brontë": ["Ünïcödé line — with a dash", None, ""],
    "empty": [],
}


@pytest.mark.parametrize("version", [2, 3])
@pytest.mark.parametrize("compressed", [1, 3])
def test_round_trip(tmp_path: Path, version: int, compressed: int) -> None:
    write_lazyload_db(tmp_path / "Rdata", NOVELS, version=version, compressed=compressed)
    got = read_rdata_strings(tmp_path / "Rdata")
    assert list(got) == list(NOVELS)
    assert got["emma"] == NOVELS["emma"]
    assert got["brontë"] == ["Ünïcödé line — with a dash", "", ""]  # NA becomes ""
    assert got["empty"] == []
    # A path with the .rdb suffix names the same database.
    assert read_rdata_strings(tmp_path / "Rdata.rdb") == got


def test_named_vector_and_latin1() -> None:
    w = RWriter(2)
    w.int(_flags(16, attr=True))
    w.int(2)
    w.charsxp("café", latin1=True)
    w.charsxp("plain")
    w.attributes({"names": ["a", "b"], "class": ["myclass"]})
    obj = unserialize(bytes(w.buf))
    assert obj.value == ["café", "plain"]
    assert obj.names() == ["a", "b"]
    assert obj.attributes["class"].value == ["myclass"]


def test_compact_intseq_altrep() -> None:
    # 1:5 as R >= 3.5 writes it: ALTREP(info=(compact_intseq, base, 13), state=c(5, 1, 1), attr=NULL).
    w = RWriter(3)
    w.int(238)
    w.int(_flags(2))
    w.symbol("compact_intseq")
    w.int(_flags(2))
    w.symbol("base")
    w.int(_flags(2))
    w.ints([13])
    w.int(NIL)
    w.int(14)
    w.int(3)
    w.buf += struct.pack(">3d", 5, 1, 1)
    w.int(NIL)
    assert unserialize(bytes(w.buf)).value == [1, 2, 3, 4, 5]


def test_unsupported_type_code_is_a_clear_error() -> None:
    w = RWriter(3)
    w.int(_flags(21))  # BCODESXP: byte code, never part of plain data
    with pytest.raises(ValueError, match="unsupported R type code 21"):
        unserialize(bytes(w.buf))


def test_non_xdr_format_and_bad_version() -> None:
    with pytest.raises(ValueError, match="only XDR"):
        unserialize(b"A\n2\n")
    with pytest.raises(ValueError, match="version 7"):
        unserialize(b"X\n" + struct.pack(">iii", 7, 0, 0))


def test_non_character_object_is_rejected(tmp_path: Path) -> None:
    w = RWriter(3)
    w.ints([1, 2, 3])
    write_lazyload_db(tmp_path / "db", {"numbers": bytes(w.buf)})
    assert read_lazyload_db(tmp_path / "db")["numbers"].value == [1, 2, 3]
    with pytest.raises(ValueError, match="'numbers' has type code 13"):
        read_rdata_strings(tmp_path / "db")
