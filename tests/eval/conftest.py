"""Shared fixtures of the capability tests: the real SmolLM2 tokenizer and Austen filler."""

from __future__ import annotations

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
