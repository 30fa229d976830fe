"""The asset installer: ``python -m lemo.assets.install`` puts lemo's offline assets into its cache, once.

- ``austen``: ``apt-get download r-cran-janeaustenr`` (1.6 MB), the .deb unpacked in pure Python (no dpkg, no
  R), its R lazy-load database read with ``rdata`` (``lemo.assets.lazyload``; the ``austen`` extra), and the six
  novels written to ``<cache>/austen/`` where ``lemo.assets.austen_texts`` reads them;
- ``smollm2``: the embedded SmolLM2 GGUF converted to an HF directory (``lemo.assets.smollm2_dir``), so the
  first training run does not pay the conversion.

This is the only place where lemo runs ``apt-get``, and nothing in the library imports this module: reading the
corpus (``austen_texts``), training and evaluation never fetch, they use the cache or fall back loudly. As root
with missing or stale package lists, ``apt-get update`` runs once, since that is all such a failure needs.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from lemo.assets.austen import DEBIAN_PACKAGE, NOVELS, austen_cache, write_cache
from lemo.assets.lazyload import read_rdata_strings

__all__ = ["fetch_debian_texts", "install_austen", "main"]

logger = logging.getLogger(__name__)

ASSETS = ("austen", "smollm2")
_RDATA_SUFFIX = "/janeaustenr/data/Rdata"
# apt-get messages that an `apt-get update` can cure (no or stale package lists).
_STALE_LIST_MARKERS = ("Unable to locate package", "has no installation candidate", "Can't select", "404")


def install_austen(cache_dir: Path | None = None, *, force: bool = False) -> Path:
    """Fetch the six novels into ``<cache>/austen`` (skipped when they are there, unless ``force``).

    Returns:
        The folder holding ``<name>.txt`` for every name in ``NOVELS``.

    Raises:
        FileNotFoundError, RuntimeError, ValueError, ImportError: the fetch failed; the message says why.
    """
    folder = austen_cache(cache_dir)
    if not force and all((folder / f"{n}.txt").is_file() for n in NOVELS):
        return folder
    write_cache(folder, fetch_debian_texts())
    return folder


def fetch_debian_texts() -> dict[str, str]:
    """Download the .deb with apt-get and pull the six novels out of its R data file."""
    with tempfile.TemporaryDirectory(prefix="lemo-austen-") as tmp:
        workdir = Path(tmp)
        deb = _apt_download(workdir)
        stem = _extract_rdata(deb.read_bytes(), workdir)
        lines = read_rdata_strings(stem)
    missing = [n for n in NOVELS if n not in lines]
    if missing:
        raise ValueError(f"{deb.name} lacks the novels {missing}; found {sorted(lines)}")
    # One element per line of the book; the trailing newline makes the texts byte-identical to the
    # extracted copies people keep around (and to what a LEMO_AUSTEN_DIR would hold).
    return {n: "\n".join(lines[n]) + "\n" for n in NOVELS}


def _run(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C"}  # English messages, so the markers above can be matched
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def _apt_download(workdir: Path) -> Path:
    apt = shutil.which("apt-get")
    if apt is None:
        raise FileNotFoundError("apt-get not found (not a Debian/Ubuntu system)")
    cmd = [apt, "download", DEBIAN_PACKAGE]
    result = _run(cmd, workdir, timeout=300)
    is_root = getattr(os, "geteuid", lambda: -1)() == 0
    if result.returncode != 0 and is_root and any(m in result.stderr for m in _STALE_LIST_MARKERS):
        logger.info("lemo: apt-get has no usable package lists; running `apt-get update` once")
        if _run([apt, "update"], workdir, timeout=600).returncode == 0:
            result = _run(cmd, workdir, timeout=300)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"`apt-get download {DEBIAN_PACKAGE}` failed: {tail[0]}")
    debs = sorted(workdir.glob(f"{DEBIAN_PACKAGE}_*.deb"))
    if not debs:
        raise RuntimeError(f"`apt-get download {DEBIAN_PACKAGE}` succeeded but wrote no .deb")
    return debs[-1]


def _ar_members(data: bytes) -> dict[str, bytes]:
    """Split a Unix ``ar`` archive (the container of a .deb) into ``{member name: bytes}``.

    Hand-written because the standard library has no ``ar`` reader and the format is a 60-byte header per
    member; a dependency (or dpkg, absent outside Debian) would cost more than these lines.
    """
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive (bad magic)")
    members: dict[str, bytes] = {}
    pos = 8
    while pos + 60 <= len(data):
        # 60-byte header: name[16] mtime[12] uid[6] gid[6] mode[8] size[10] magic[2]
        header = data[pos : pos + 60]
        if header[58:60] != b"`\n":
            raise ValueError(f"corrupt ar member header at offset {pos}")
        name = header[:16].decode("ascii").strip().rstrip("/")  # GNU ar ends names with '/'
        size = int(header[48:58].decode("ascii").strip())
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size & 1)  # members are 2-byte aligned
    return members


def _open_data_tar(members: dict[str, bytes]) -> tarfile.TarFile:
    name = next((n for n in members if n.startswith("data.tar")), None)
    if name is None:
        raise ValueError(f"no data.tar.* in the .deb (members: {sorted(members)})")
    payload = members[name]
    if name.endswith(".zst"):
        try:
            from compression import zstd  # type: ignore[import-not-found]  # stdlib from Python 3.14
        except ImportError as exc:
            raise ValueError(f"{name} needs Python >= 3.14 (compression.zstd) to unpack") from exc
        payload = zstd.decompress(payload)
    # "r:*" detects gzip, bzip2, xz and plain tar by their magic bytes.
    return tarfile.open(fileobj=io.BytesIO(payload), mode="r:*")


def _extract_rdata(deb: bytes, workdir: Path) -> Path:
    """Write the package's ``Rdata.rdx``/``Rdata.rdb`` into ``workdir``; return their common stem."""
    with _open_data_tar(_ar_members(deb)) as tar:
        found = 0
        for member in tar.getmembers():
            for ext in (".rdx", ".rdb"):
                if member.isfile() and member.name.endswith(_RDATA_SUFFIX + ext):
                    source = tar.extractfile(member)
                    assert source is not None  # regular files always have a payload
                    (workdir / f"Rdata{ext}").write_bytes(source.read())
                    found += 1
    if found != 2:
        raise ValueError(f"the .deb lacks janeaustenr/data/Rdata.rdx and .rdb (found {found} of 2)")
    return workdir / "Rdata"


def main(argv: list[str] | None = None) -> int:
    """``python -m lemo.assets.install [austen] [smollm2] [--force]``: install the named assets (default: all)."""
    parser = argparse.ArgumentParser(
        prog="python -m lemo.assets.install", description="Put lemo's offline assets into its cache."
    )
    # No `choices=`: argparse (before 3.12) rejects an empty `nargs="*"` list against them.
    parser.add_argument("assets", nargs="*", metavar="{austen,smollm2}", help="default: all of them")
    parser.add_argument("--force", action="store_true", help="fetch the Austen novels again even if cached")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.assets) - set(ASSETS))
    if unknown:
        parser.error(f"unknown assets {unknown}; choose from {', '.join(ASSETS)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    wanted = args.assets or list(ASSETS)
    failed = False
    for asset in wanted:
        try:
            if asset == "austen":
                where = install_austen(force=args.force)
            else:
                from lemo.assets.smollm2 import smollm2_dir  # converts on first call

                where = smollm2_dir()
        except (OSError, RuntimeError, ValueError, ImportError, subprocess.SubprocessError) as exc:
            print(f"lemo assets: {asset}: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"lemo assets: {asset} in {where}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
