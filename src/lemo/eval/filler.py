"""Filler text for the synthetic tasks: tokenized once, with the token positions where a needle may go.

Needles are spliced into the filler in token space, so a sample's length is exact. A needle goes at a
*sentence start* (the previous token ends a sentence and this one begins with whitespace), so it reads as a
sentence of its own; filler without punctuation falls back to word starts, then to any position.
"""

from __future__ import annotations

import bisect
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SENTENCE_END = (".", "!", "?")
CLOSERS = "\"'”’)]"  # may follow the full stop:  ...she said."  counts as a sentence end
ABBREVIATIONS = {"Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "Mt", "Col", "Capt", "Gen", "Rev"}
# Token-string prefixes that stand for leading whitespace: byte-level BPE space/newline/tab, SentencePiece
# space, SentencePiece byte-fallback newline. Needed because SentencePiece's decode([id]) drops the space.
_WS_PREFIXES = ("Ġ", "Ċ", "ĉ", "▁", "<0x0A>", "<0x09>", "<0x20>")
_SENTENCE, _WORD = 1, 2


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of `text` without special tokens (HF tokenizers; `encode(text)` objects as a fallback)."""
    try:
        # verbose=False: long filler is the point here; HF's "longer than model_max_length" warning is noise.
        return list(tokenizer.encode(text, add_special_tokens=False, verbose=False))
    except TypeError:
        return list(tokenizer.encode(text))


def unwrap(text: str) -> str:
    """`text` with each paragraph on one line and single spaces: the line breaks inside a paragraph and the runs
    of spaces become one space; paragraphs (a blank line between) stay apart, one blank line each."""
    paragraphs = re.split(r"\n[ \t]*\n\s*", text.strip())
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def special_prefix(tokenizer: Any) -> list[int]:
    """The ids the tokenizer puts before a text by default (BOS for Llama, nothing for SmolLM2/Qwen)."""
    try:
        plain = encode(tokenizer, "a")
        full = list(tokenizer.encode("a", add_special_tokens=True))
    except TypeError:
        return []
    for i in range(len(full) - len(plain) + 1):
        if full[i : i + len(plain)] == plain:
            return full[:i]
    return []


def _token_kinds(tokenizer: Any, ids: Sequence[int]) -> dict[int, tuple[str, bool]]:
    """For each distinct id: (decoded text, begins with whitespace)."""
    convert = getattr(tokenizer, "convert_ids_to_tokens", None)
    kinds = {}
    for i in set(ids):
        text = tokenizer.decode([i])
        piece = convert(i) if callable(convert) else text
        piece = piece if isinstance(piece, str) else text
        kinds[i] = (text, text[:1].isspace() or piece.startswith(_WS_PREFIXES))
    return kinds


def _ends_sentence(prev2: str, prev: str) -> bool:
    stripped = prev.rstrip().rstrip(CLOSERS)
    if not stripped.endswith(SENTENCE_END):
        return False
    word = stripped[:-1].strip() or prev2.strip()  # "Mr" "." or "Mr." as one token
    return word.split()[-1] not in ABBREVIATIONS if word else True


@dataclass
class Filler:
    """A token stream (the texts, "\\n\\n" between them) and, per position, whether a needle may start there.

    The stream is read cyclically, so a window may be longer than the text (it wraps around).
    """

    ids: list[int]
    """Token ids of the filler texts, in order."""
    kinds: bytes
    """Per position: 1 = sentence start, 2 = word start (not a sentence start), 0 = inside a word."""

    @classmethod
    def from_texts(cls, texts: Sequence[str] | str, tokenizer: Any) -> Filler:
        if isinstance(texts, str):
            texts = [texts]  # a lone string would otherwise be iterated character by character
        sep = encode(tokenizer, "\n\n")
        ids: list[int] = []
        starts = {0}
        for text in texts:
            if ids:
                ids.extend(sep)
                starts.add(len(ids))
            ids.extend(encode(tokenizer, text))
        if len(ids) < 2:
            raise ValueError("the filler text is empty; pass --data with a file of ordinary prose.")
        info = _token_kinds(tokenizer, ids)
        kinds = bytearray(len(ids))
        for j in range(len(ids)):
            text, ws = info[ids[j]]
            if j in starts:
                kinds[j] = _SENTENCE
            elif ws:
                prev2 = info[ids[j - 2]][0] if j >= 2 else ""
                kinds[j] = _SENTENCE if _ends_sentence(prev2, info[ids[j - 1]][0]) else _WORD
        return cls(ids, bytes(kinds))

    def random_start(self, rng: random.Random) -> int:
        """A sentence start chosen uniformly at random (any position if the text has no sentence starts)."""
        pos = rng.randrange(len(self.ids))
        j = self.kinds.find(_SENTENCE, pos)
        if j < 0:
            j = self.kinds.find(_SENTENCE)
        return pos if j < 0 else j

    def window(self, start: int, n: int) -> tuple[list[int], list[int], list[int]]:
        """`n` tokens from `start` (wrapping around), with the window's sentence starts and word starts.

        Both position lists are sorted, window-relative, and hold 0 and n (a needle may open or close it).
        """
        total = len(self.ids)
        ids: list[int] = []
        kinds = bytearray()
        pos = start % total
        while len(ids) < n:
            take = min(n - len(ids), total - pos)
            ids.extend(self.ids[pos : pos + take])
            kinds.extend(self.kinds[pos : pos + take])
            pos = 0
        sentences = [i for i, k in enumerate(kinds) if k == _SENTENCE and i > 0]
        words = [i for i, k in enumerate(kinds) if k and i > 0]
        return ids, [0, *sentences, n], [0, *words, n]


def nearest(positions: list[int], target: int) -> int:
    """The element of sorted `positions` closest to `target` (the earlier one on a tie)."""
    i = bisect.bisect_left(positions, target)
    if i == 0:
        return positions[0]
    if i == len(positions):
        return positions[-1]
    before, after = positions[i - 1], positions[i]
    return before if target - before <= after - target else after


def snap(target: int, sentences: list[int], words: list[int], n: int) -> int:
    """Where a needle aimed at filler position `target` goes: the nearest sentence start when one is within
    max(64 tokens, 5% of the window), else the nearest word start, else `target` itself."""
    reach = max(64, n // 20)
    s = nearest(sentences, target)
    if abs(s - target) <= reach:
        return s
    w = nearest(words, target)
    return w if abs(w - target) <= reach else target
