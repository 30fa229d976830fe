"""Jane Austen's six novels as a long-document corpus, fetched from Debian's ``r-cran-janeaustenr``.

Order of sources (first hit wins):

1. ``$LEMO_AUSTEN_DIR``: a folder holding the six ``<name>.txt`` files (an explicit setting, so a
   missing file is an error rather than a silent fallback);
2. the cache, ``<cache>/austen/<name>.txt`` (``<cache>`` = ``$LEMO_CACHE`` or ``~/.cache/lemo``);
3. ``apt-get download r-cran-janeaustenr`` (1.6 MB), unpacked in pure Python (no dpkg, no R), then cached;
4. a loudly reported fallback to CPython's ``pydoc_data.topics`` prose, so that code needing *some*
   long English text still runs; results on it are not comparable with Austen results.
"""

import io
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lemo.assets.rdata import read_rdata_strings
from lemo.utils.env import lemo_cache_dir

__all__ = ["HELD_OUT_NOVEL", "NOVELS", "AustenCorpus", "austen_split", "austen_texts"]

logger = logging.getLogger(__name__)

HELD_OUT_NOVEL = "persuasion"
"""The novel nothing trains on by default: held-out perplexity and the capability tasks' eval filler."""
NOVELS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility")
DEBIAN_PACKAGE = "r-cran-janeaustenr"
DEBIAN_SOURCE = f"debian:{DEBIAN_PACKAGE}"
_RDATA_SUFFIX = "/janeaustenr/data/Rdata"
# apt-get messages that an `apt-get update` can cure (no or stale package lists).
_STALE_LIST_MARKERS = ("Unable to locate package", "has no installation candidate", "Can't select", "404")


@dataclass(frozen=True)
class AustenCorpus:
    """The corpus: ``texts`` maps a novel's key (see ``NOVELS``) to its full text; ``source`` says
    where it came from (``"debian:r-cran-janeaustenr"``, ``"dir:<path>"`` or ``"fallback:pydoc_data"``)."""

    texts: dict[str, str]
    source: str

    def split(self) -> tuple[dict[str, str], str]:
        """({name: text} of the training novels, the held-out novel's name). The fallback corpus has no
        *Persuasion*; its last text is held out instead."""
        names = sorted(self.texts)
        held = HELD_OUT_NOVEL if HELD_OUT_NOVEL in self.texts else names[-1]
        return {n: self.texts[n] for n in names if n != held}, held


def austen_split() -> tuple[list[str], str]:
    """(training novels' texts, held-out novel's text): the split every default of lemo uses, so training rows
    and evaluation never share text."""
    corpus = austen_texts()
    train, held = corpus.split()
    return list(train.values()), corpus.texts[held]


def austen_texts(cache_dir: Path | None = None) -> AustenCorpus:
    """Return the six Austen novels, fetching and caching them on first use.

    Args:
        cache_dir: lemo cache root (default ``$LEMO_CACHE`` or ``~/.cache/lemo``); the texts live in
            its ``austen/`` subfolder. Ignored when ``$LEMO_AUSTEN_DIR`` is set.

    Returns:
        An :class:`AustenCorpus`. When every source fails, a warning is logged and the corpus holds two
        halves of ``pydoc_data.topics`` (keys ``pydoc_a``, ``pydoc_b``) with ``source="fallback:pydoc_data"``.

    Raises:
        FileNotFoundError: ``$LEMO_AUSTEN_DIR`` is set but lacks one of the six files.
    """
    env_dir = os.environ.get("LEMO_AUSTEN_DIR")
    if env_dir:
        folder = Path(env_dir).expanduser()
        missing = [f"{n}.txt" for n in NOVELS if not (folder / f"{n}.txt").is_file()]
        if missing:
            raise FileNotFoundError(f"LEMO_AUSTEN_DIR={env_dir} lacks {', '.join(missing)}")
        return AustenCorpus(_read_folder(folder), f"dir:{folder}")

    folder = Path(cache_dir or lemo_cache_dir()) / "austen"
    if all((folder / f"{n}.txt").is_file() for n in NOVELS):
        return AustenCorpus(_read_folder(folder), DEBIAN_SOURCE)

    try:
        texts = _fetch_debian_texts()
    except Exception as exc:  # any failure here has the same remedy, reported below
        logger.warning(
            "lemo: could not fetch the Jane Austen corpus (%s: %s). Using CPython's pydoc_data.topics "
            "text instead; results on it are NOT comparable with Austen results. Fix: on Debian/Ubuntu "
            "make `apt-get download %s` work (run `apt-get update` as root), or set LEMO_AUSTEN_DIR to "
            "a folder with %s.",
            type(exc).__name__,
            exc,
            DEBIAN_PACKAGE,
            ", ".join(f"{n}.txt" for n in NOVELS),
        )
        return _fallback_corpus()

    try:
        _write_cache(folder, texts)
    except OSError as exc:  # a read-only cache costs a re-fetch next time, nothing more
        logger.warning("lemo: could not cache the Austen texts in %s: %s", folder, exc)
    return AustenCorpus(texts, DEBIAN_SOURCE)


def _read_folder(folder: Path) -> dict[str, str]:
    return {n: (folder / f"{n}.txt").read_text(encoding="utf-8") for n in NOVELS}


def _write_cache(folder: Path, texts: dict[str, str]) -> None:
    # Each file appears only complete (temp file + os.replace), so a killed run or a concurrent writer
    # never leaves a truncated novel behind; a partial set just triggers a re-fetch.
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                f.write(text)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is plain data, like any download
            os.replace(tmp, folder / f"{name}.txt")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _fallback_corpus() -> AustenCorpus:
    from pydoc_data.topics import topics

    keys = sorted(topics)
    half = len(keys) // 2  # two documents, so train / held-out splits still have something to split
    texts = {
        "pydoc_a": "\n\n".join(topics[k] for k in keys[:half]),
        "pydoc_b": "\n\n".join(topics[k] for k in keys[half:]),
    }
    return AustenCorpus(texts, "fallback:pydoc_data")


def _fetch_debian_texts() -> dict[str, str]:
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
    """Split a Unix ``ar`` archive (the container of a .deb) into ``{member name: bytes}``."""
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
