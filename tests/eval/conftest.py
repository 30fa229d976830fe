"""Shared fixtures of the capability tests: the real SmolLM2 tokenizer and Austen filler, and the suite runner."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lemo.eval.filler import Filler


@pytest.fixture(scope="session")
def tok(smollm2):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2, local_files_only=True)


@pytest.fixture(scope="session")
def held_text(austen_dir) -> str:
    """About 10K tokens of Persuasion (the held-out novel): the eval filler."""
    return (austen_dir / "persuasion.txt").read_text(encoding="utf-8")[:40_000]


@pytest.fixture(scope="session")
def filler(held_text, tok) -> Filler:
    return Filler.from_texts(held_text, tok)


QUALITY = Path(__file__).resolve().parents[2] / "benchmarks" / "quality"


@pytest.fixture(scope="module")
def suite_mod():
    """benchmarks/quality/suite.py as a module (it imports its neighbours, so their folder goes on the path)."""
    sys.path.insert(0, str(QUALITY))
    try:
        import suite

        yield suite
    finally:
        sys.path.remove(str(QUALITY))


# Text only the held-out phrasing uses (statement or question), per family (lemo/eval/suite_phrasings.json).
HELD_OUT_MARK = {
    "multikey": "the badge of",
    "multivalue": "tracking number",
    "vartrack": "Assign ",
    "kv": "<entries>",
    "recall": "immediately succeed",
    "count": "planted a tree",
}


@pytest.fixture(scope="session")
def held_out_mark() -> dict[str, str]:
    """Per family, text that only its held-out phrasing uses: none of it may reach a training row."""
    return HELD_OUT_MARK


def load_script(path):
    """A benchmark script as a module, its folder on sys.path while it is in use (its helpers sit beside it):
    yields the module; use it in a fixture."""
    import importlib.util
    import sys

    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(path.parent))
