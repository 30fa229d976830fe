"""The kinds of an answer's tokens, and teacher-forced accuracy per kind: whether a model that misses a question
failed to find its value or to copy it once found.

A value's first character (a digit or letter after a token without one) is where the model must locate the fact;
its later characters follow by copying. Suite families whose exact match stays low with high token accuracy are
told apart this way (docs/suite.md): a low ``value_start`` with a high ``value_rest`` means the lookup fails.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

KINDS = ("space", "value_start", "value_rest", "separator")
SOURCES = ("right", "context", "invented", "none")
"""Where a generated answer's first value came from (`value_source`)."""


def token_kinds(pieces: Sequence[str]) -> list[str]:
    """The kind of each answer token from its text: whitespace -> "space"; a token with a letter or digit starts a
    value unless the token before it also had one (then it continues it); anything else separates values."""
    kinds, prev_value = [], False
    for p in pieces:
        value = any(ch.isalnum() for ch in p)
        if not p.strip():
            kinds.append("space")
        elif value:
            kinds.append("value_rest" if prev_value else "value_start")
        else:
            kinds.append("separator")
        prev_value = value
    return kinds


def kind_accuracy(
    kinds: Sequence[Sequence[str]], hits: Sequence[Sequence[bool]]
) -> dict[str, tuple[float, int]]:
    """Kind -> (fraction of its tokens predicted right, how many tokens) over answers, for the kinds present."""
    out = {}
    for k in KINDS:
        got = [h for ks, hs in zip(kinds, hits, strict=True) for kk, h in zip(ks, hs, strict=True) if kk == k]
        if got:
            out[k] = (sum(got) / len(got), len(got))
    return out


def first_errors(kinds: Sequence[Sequence[str]], hits: Sequence[Sequence[bool]]) -> dict[str, int]:
    """Kind -> how many wrong answers first went wrong at a token of that kind."""
    first = [ks[list(hs).index(False)] for ks, hs in zip(kinds, hits, strict=True) if False in hs]
    return {k: first.count(k) for k in KINDS if k in first}


def first_value(text: str) -> str:
    """The first run of letters or digits of an answer (" 858, 943" -> "858"); "" when it has none."""
    m = re.search(r"[0-9A-Za-z]+", text)
    return m.group(0) if m else ""


def value_source(prompt: str, answer: str, generated: str) -> str:
    """Where a generated answer's first value came from: "right" (the answer's first value), "context" (another
    value that stands as a whole word in the prompt: the model found the wrong fact), "invented" (in no word of the
    prompt: it found none) or "none" (it generated no value). Teacher forcing says at which token an answer went
    wrong; this says whether the lookup confused two facts or failed to find any."""
    got = first_value(generated)
    if not got:
        return "none"
    if got == first_value(answer):
        return "right"
    whole_word = re.compile(rf"(?<![0-9A-Za-z]){re.escape(got)}(?![0-9A-Za-z])")
    return "context" if whole_word.search(prompt) else "invented"
