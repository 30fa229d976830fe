"""The capability suite's contexts: every family's facts spliced into filler, in token space, with their spans.

`SuiteConfig` (`lemo.config.suite`) holds the difficulty knobs. `draw_facts` draws one context's facts (every family, names from one
split's pool, `lemo.eval.names`); `layout` splices them into a filler window at sentence starts and picks the
``recall`` sites (a filler sentence to quote, and the words after it that answer). The result knows the token
span of every piece of evidence, which is what lets training rows carry evidence positions (for the evidence
oracle) and eval samples report where their facts sit. Rows and samples are built in `lemo.eval.suite_rows`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from lemo.config.suite import FAMILIES, SuiteConfig
from lemo.eval import suite_families as fam
from lemo.eval.filler import Filler, encode, snap
from lemo.eval.names import Split, sample_names, sample_variables


def draw_facts(rng: random.Random, cfg: SuiteConfig, split: Split) -> list[fam.Fact]:
    """One context's facts of every family but ``recall`` (which quotes the filler), names all distinct."""
    n = {f: cfg.n_facts(f) for f in FAMILIES}
    n_names = n["multikey"] + n["multivalue"] + n["count"] + n["kv"] * cfg.kv_pairs
    names = iter(sample_names(rng, n_names, split))
    take = lambda k: [next(names) for _ in range(k)]
    codes, wording = fam.Codes(rng), fam.Wording.of(cfg)
    facts = fam.multikey(rng, take(n["multikey"]), codes, split, wording)
    mv = (cfg.multivalue_values, cfg.multivalue_digits)
    facts += fam.multivalue(rng, take(n["multivalue"]), codes, *mv, split, wording, cfg.multivalue_adjacent)
    hops = cfg.vartrack_hops + 1
    variables = sample_variables(rng, n["vartrack"] * hops, split)
    chains = [variables[i * hops : (i + 1) * hops] for i in range(n["vartrack"])]
    facts += fam.vartrack(rng, chains, codes, split, cfg.vartrack_digits, wording)
    kv = (cfg.kv_value_len, cfg.kv_asked, split, cfg.kv_alphabet, wording)
    facts += [fam.kv_block(rng, take(cfg.kv_pairs), codes, *kv) for _ in range(n["kv"])]
    if cfg.count_form in ("max", "last"):
        values = (cfg.count_max, split, wording, cfg.count_adjacent, cfg.count_form)
        facts += fam.count_values(rng, take(n["count"]), codes, *values)
    else:
        count = (cfg.count_max, split, cfg.count_words, wording, cfg.count_adjacent)
        facts += fam.count(rng, take(n["count"]), *count)
    for f in facts:  # rescaled after every draw, so a band moves no other family's facts
        if f.family in cfg.depth_band:
            lo, hi = cfg.depth_band[f.family]
            f.depths = [lo + d * (hi - lo) for d in f.depths]
    return facts


@dataclass
class RecallSite:
    quote: str
    answer: str
    quote_group: int
    answer_group: int


@dataclass
class Layout:
    """A context: token pieces in order, each plain filler (group None) or one piece of evidence."""

    pieces: list[tuple[list[int], int | None]]
    recall: list[RecallSite]
    groups: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    """Evidence group -> token spans [start, end) in the context."""

    @property
    def ids(self) -> list[int]:
        return [t for ids, _ in self.pieces for t in ids]


def statement_groups(facts: list[fam.Fact]) -> list[list[int]]:
    """Group id of every statement: statement j of fact i is group groups[i][j]; recall groups follow."""
    out, g = [], 0
    for f in facts:
        out.append(list(range(g, g + len(f.statements))))
        g += len(f.statements)
    return out


def _recall_sites(
    tokenizer: Any, window: list[int], sentences: list[int], words: list[int], n: int, rng: random.Random,
    cfg: SuiteConfig, first_group: int,
) -> tuple[list[RecallSite], list[tuple[int, int, int, int]]]:  # fmt: skip
    """Up to `n` quotable sentences: (sites, [(quote start, answer start, answer end, site index)])."""
    if n == 0:
        return [], []
    text = " ".join(tokenizer.decode(window).split())
    word_index = {w: i for i, w in enumerate(words)}
    lo, hi = cfg.recall_quote_words
    # Sentence k spans sentences[k]..sentences[k+1]. The order is a hash of the sentence's position, not a
    # shuffle, so a window a few tokens longer or shorter (fitting a row to its length) keeps its sites.
    salt = rng.getrandbits(32)
    order = sorted(range(1, len(sentences) - 2), key=lambda k: hash((salt, sentences[k])))
    if "recall" in cfg.depth_band:  # only quotes that start inside the band (the salt is drawn either way)
        first, last = (x * len(window) for x in cfg.depth_band["recall"])
        order = [k for k in order if first <= sentences[k] <= last]
    sites, spans, taken = [], [], []
    for k in order:
        a, b = sentences[k], sentences[k + 1]
        wi = word_index.get(b)
        if wi is None:
            continue
        e = _words_end(tokenizer, window, words, wi, cfg.recall_words)
        if e is None:
            continue
        n_words = word_index.get(b, 0) - word_index.get(a, 0)
        if not lo <= n_words <= hi or any(a < t1 and t0 < e for t0, t1 in taken):
            continue
        raw = tokenizer.decode(window[a:b])
        if "\n\n" in raw or '"' in raw:  # one paragraph, no dialogue marks inside the question's quotes
            continue
        # Spacing normalised (the novels wrap lines and put two spaces after a full stop): what is asked is
        # the words, and the training questions and answers use the same form.
        quote = " ".join(tokenizer.decode(window[a:b]).split())
        answer = " " + " ".join(tokenizer.decode(window[b:e]).split())
        if text.count(quote) != 1:
            continue
        # On unwrapped filler the site must be the context's own tokens (no paragraph break before the answer,
        # no stray spacing), so the question quotes what the model can find by copying.
        if cfg.unwrap_filler and (raw != " " + quote or tokenizer.decode(window[b:e]) != answer):
            continue
        g = first_group + 2 * len(sites)
        sites.append(RecallSite(quote, answer, g, g + 1))
        spans.append((a, b, e, len(spans)))
        taken.append((a - 1, e + 1))  # not adjacent either: another site's quote would run into this answer
        if len(sites) == n:
            break
    return sites, spans


def _words_end(tokenizer: Any, window: list[int], words: list[int], first: int, n: int) -> int | None:
    """The word start after `n` words from words[first] (a lone whitespace token starts no word)."""
    for j in range(first + 1, min(len(words), first + 3 * n + 1)):
        if len(tokenizer.decode(window[words[first] : words[j]]).split()) >= n:
            return words[j]
    return None


def layout(
    filler: Filler,
    tokenizer: Any,
    start: int,
    n_filler: int,
    facts: list[fam.Fact],
    n_recall: int,
    rng: random.Random,
    cfg: SuiteConfig,
) -> Layout:
    """Splice every statement into `n_filler` filler tokens from `start`, at the sentence start nearest its
    depth, and pick `n_recall` recall sites; a statement never splits a quote from the words it answers."""
    window, sentences, words = filler.window(start, n_filler)
    groups = statement_groups(facts)
    n_groups = sum(len(g) for g in groups)
    sites, spans = _recall_sites(tokenizer, window, sentences, words, n_recall, rng, cfg, n_groups)
    tag: list[int | None] = [None] * n_filler
    for a, b, e, i in spans:
        tag[a:b] = [sites[i].quote_group] * (b - a)
        tag[b:e] = [sites[i].answer_group] * (e - b)
    inserts = []  # (filler position, depth, group, ids)
    for f, g in zip(facts, groups, strict=True):
        for s, d, gid in zip(f.statements, f.depths, g, strict=True):
            p = snap(round(d * n_filler), sentences, words, n_filler)
            p = next((a for a, _b, e, _ in spans if a < p < e), p)  # before the quote, not inside its site
            inserts.append((p, d, gid, encode(tokenizer, " " + s)))
    inserts.sort(key=lambda x: (x[0], x[1], x[2]))
    out = Layout([], sites)
    prev = 0
    for p, _d, gid, ids in [*inserts, (n_filler, 2.0, -1, [])]:
        _filler_pieces(out, window, tag, prev, p)
        if ids:
            out.pieces.append((ids, gid))
        prev = p
    pos = 0
    for ids, gid in out.pieces:
        if gid is not None:
            out.groups.setdefault(gid, []).append((pos, pos + len(ids)))
        pos += len(ids)
    return out


def _filler_pieces(out: Layout, window: list[int], tag: list[int | None], a: int, b: int) -> None:
    """Filler [a, b) as runs of one tag each (a recall quote or answer is its own piece)."""
    i = a
    while i < b:
        j = i
        while j < b and tag[j] == tag[i]:
            j += 1
        out.pieces.append((window[i:j], tag[i]))
        i = j
