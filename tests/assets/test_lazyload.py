"""R lazy-load reader: round trips through a small writer of R's XDR serialization and lazy-load container.

The writer is ours (a test fixture); the parsing under test is rdata's plus our container reading, so these
tests pin what the Austen installer relies on: versions 2 and 3, zlib and xz blobs, NA and Latin-1 strings.
"""

import gzip
import lzma
import struct
import sys
import zlib
from pathlib import Path

import pytest

from lemo.assets import lazyload
from lemo.assets.lazyload import read_lazyload_db, read_rdata_strings

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


def test_latin1_and_attributes(tmp_path: Path) -> None:
    w = RWriter(2)
    w.int(_flags(16, attr=True))
    w.int(2)
    w.charsxp("café", latin1=True)
    w.charsxp("plain")
    w.attributes({"names": ["a", "b"], "class": ["myclass"]})
    write_lazyload_db(tmp_path / "db", {"words": bytes(w.buf)})
    assert read_rdata_strings(tmp_path / "db") == {"words": ["café", "plain"]}


def test_compact_intseq_altrep_is_a_non_character_object(tmp_path: Path) -> None:
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
    write_lazyload_db(tmp_path / "db", {"numbers": bytes(w.buf)})
    obj = read_lazyload_db(tmp_path / "db")["numbers"]
    assert list(sys.modules["rdata"].conversion.convert(obj)) == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="'numbers' has type code 13"):
        read_rdata_strings(tmp_path / "db")


def test_unparsable_object_is_a_clear_error(tmp_path: Path) -> None:
    w = RWriter(3)
    w.int(_flags(21))  # BCODESXP: byte code, never part of plain data
    write_lazyload_db(tmp_path / "db", {"code": bytes(w.buf)})
    with pytest.raises(ValueError, match="could not parse object 'code'"):
        read_rdata_strings(tmp_path / "db")


def test_index_without_variables_is_rejected(tmp_path: Path) -> None:
    w = RWriter(3)
    w.strsxp(["not", "an", "index"])
    (tmp_path / "db.rdx").write_bytes(gzip.compress(bytes(w.buf)))
    (tmp_path / "db.rdb").write_bytes(b"")
    with pytest.raises(ValueError, match="not a lazy-load index"):
        read_lazyload_db(tmp_path / "db")


def test_blob_container_errors() -> None:
    data = b"X\n" + b"payload"
    with pytest.raises(ValueError, match="index says 99"):
        lazyload._decompress_blob(struct.pack(">I", 99) + zlib.compress(data), 1)
    with pytest.raises(ValueError, match="type byte b'Q'"):
        lazyload._decompress_blob(struct.pack(">I", len(data)) + b"Q" + data, 3)
    assert lazyload._decompress_blob(struct.pack(">I", len(data)) + b"0" + data, 2) == data


def test_missing_rdata_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_lazyload_db(tmp_path / "Rdata", NOVELS)
    monkeypatch.setitem(sys.modules, "rdata", None)  # what an environment without the extra looks like
    with pytest.raises(ImportError, match=r"lemo\[austen\]"):
        read_rdata_strings(tmp_path / "Rdata")
