"""Jane Austen's six novels as a long-document corpus, from Debian's ``r-cran-janeaustenr``.

Order of sources (first hit wins):

1. ``$LEMO_AUSTEN_DIR``: a folder holding the six ``<name>.txt`` files (an explicit setting, so a
   missing file is an error rather than a silent fallback);
2. the cache, ``<cache>/austen/<name>.txt`` (``<cache>`` = ``$LEMO_CACHE`` or ``~/.cache/lemo``), which the
   asset installer fills: ``python -m lemo.assets.install`` (see ``lemo.assets.install``);
3. a loudly reported fallback to CPython's ``pydoc_data.topics`` prose, so that code needing *some*
   long English text still runs; results on it are not comparable with Austen results.

Reading never fetches: ``apt-get`` runs only in the installer, never on import, in training or in evaluation.
"""

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lemo.utils.env import lemo_cache_dir

__all__ = [
    "HELD_OUT_NOVEL",
    "NOVELS",
    "AustenCorpus",
    "austen_cache",
    "austen_split",
    "austen_texts",
    "write_cache",
]

logger = logging.getLogger(__name__)

HELD_OUT_NOVEL = "persuasion"
"""The novel nothing trains on by default: held-out perplexity and the capability tasks' eval filler."""
NOVELS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility")
DEBIAN_PACKAGE = "r-cran-janeaustenr"
DEBIAN_SOURCE = f"debian:{DEBIAN_PACKAGE}"
INSTALL_COMMAND = "python -m lemo.assets.install"


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


def austen_cache(cache_dir: Path | None = None) -> Path:
    """The folder the installer writes the novels to: ``<cache>/austen`` (``<cache>`` = ``$LEMO_CACHE`` or
    ``~/.cache/lemo`` unless given)."""
    return Path(cache_dir or lemo_cache_dir()) / "austen"


def austen_texts(cache_dir: Path | None = None) -> AustenCorpus:
    """Return the six Austen novels from ``$LEMO_AUSTEN_DIR`` or the cache the asset installer filled.

    Args:
        cache_dir: lemo cache root (default ``$LEMO_CACHE`` or ``~/.cache/lemo``); the texts live in
            its ``austen/`` subfolder. Ignored when ``$LEMO_AUSTEN_DIR`` is set.

    Returns:
        An :class:`AustenCorpus`. When the novels are not installed, a warning names the installer and the
        corpus holds two halves of ``pydoc_data.topics`` (keys ``pydoc_a``, ``pydoc_b``) with
        ``source="fallback:pydoc_data"``; nothing is fetched here.

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

    folder = austen_cache(cache_dir)
    if all((folder / f"{n}.txt").is_file() for n in NOVELS):
        return AustenCorpus(_read_folder(folder), DEBIAN_SOURCE)

    logger.warning(
        "lemo: the Jane Austen corpus is not installed in %s. Using CPython's pydoc_data.topics text "
        "instead; results on it are NOT comparable with Austen results. Fix: run `%s` once (it fetches "
        "Debian's %s with apt-get and reads it with rdata, the `austen` extra), or set LEMO_AUSTEN_DIR to "
        "a folder with %s.",
        folder,
        INSTALL_COMMAND,
        DEBIAN_PACKAGE,
        ", ".join(f"{n}.txt" for n in NOVELS),
    )
    return _fallback_corpus()


def _read_folder(folder: Path) -> dict[str, str]:
    return {n: (folder / f"{n}.txt").read_text(encoding="utf-8") for n in NOVELS}


def write_cache(folder: Path, texts: dict[str, str]) -> None:
    """Write ``{name: text}`` as ``<folder>/<name>.txt`` (what the installer does with the fetched novels)."""
    # Each file appears only complete (temp file + os.replace), so a killed run or a concurrent writer
    # never leaves a truncated novel behind; a partial set reads as not installed (the installer fetches again).
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
