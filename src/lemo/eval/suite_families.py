"""The capability suite's task families and their phrasings (see docs/suite.md).

A family turns a random draw (names, codes, variables) into *facts*: statements spliced into the filler, and
the questions they answer. Every family has several phrasings; each phrasing rewords both the statement and
its question, so a model that learned one phrasing's surface form does not get the held-out one for free.
Phrasings ``TRAIN_PHRASINGS`` are what training rows use (one drawn per fact, so a row mixes them; the first
`SuiteConfig.train_phrasings` of them, 3 in v1 and v2); phrasing ``EVAL_PHRASING`` (3) is the held-out one, used
by every eval sample and never by a training row. `Wording` carries the three wording knobs to the families.

``recall`` (the words that follow a quoted sentence of the filler) has no statement: its evidence is the filler
itself, so `lemo.eval.suite` places it; this module only holds its phrasings.
"""

from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import dataclass
from importlib import resources

from lemo.config.suite import ALPHABETS, EVAL_PHRASING, NUMBER_WORDS, TRAIN_PHRASINGS, SuiteConfig

# phrasings per family (suite_phrasings.json): the training ones and the held-out one
N_PHRASINGS = len(TRAIN_PHRASINGS) + 1


@dataclass(frozen=True)
class Wording:
    """The wording knobs of `SuiteConfig`: how many training phrasings to draw from, whether every question
    ends at a bare "Answer:" instead of its phrasing's lead-in, and whether eval holds its phrasing out. The
    defaults word v1 and v2."""

    train_phrasings: int = 3
    shared_lead: bool = False
    held_out_phrasing: bool = True
    recall_echo: int = 0
    held_out: tuple[tuple[str, int], ...] = ()
    """(family, phrasing) pairs: the phrasing a family holds out instead of ``EVAL_PHRASING`` (`SuiteConfig.held_out`)."""

    @classmethod
    def of(cls, cfg: SuiteConfig) -> Wording:
        held = tuple(sorted(cfg.held_out.items()))
        return cls(cfg.train_phrasings, cfg.shared_lead, cfg.held_out_phrasing, cfg.recall_echo, held)

    def eval_phrasing(self, family: str) -> int:
        return dict(self.held_out).get(family, EVAL_PHRASING)


@dataclass
class Question:
    family: str
    text: str
    """"\\nQuestion: ...\\nAnswer: <lead-in>": ends right before the answer."""
    answer: str
    """The value text with its leading space, e.g. " 48213"; no full stop."""
    evidence: list[int]
    """Indices of the statements (in `Fact.statements`) the answer needs."""


@dataclass
class Fact:
    """Statements to splice at `depths` (relative, in [0, 1]) and the questions about them."""

    family: str
    statements: list[str]
    depths: list[float]
    questions: list[Question]


def _q(question: str, lead: str) -> str:
    """The question text, ending right before the answer's leading space. An empty lead (shared_lead) ends at
    "Answer:", so "Answer:" + " 123" reads as "Answer: <lead> 123" does, with the answer tokenized the same."""
    return f"\nQuestion: {question}\nAnswer:" + (f" {lead}" if lead else "")


# The phrasings are data (suite_phrasings.json, which says what each field is): per family a tuple of phrasings,
# each a tuple of format strings.
_PHRASINGS = json.loads(
    resources.files("lemo.eval").joinpath("suite_phrasings.json").read_text(encoding="utf-8")
)
PHRASINGS: dict[str, tuple[tuple[str, ...], ...]] = {
    family: tuple(tuple(p) for p in _PHRASINGS[family])
    for family in ("multikey", "multivalue", "vartrack", "kv", "recall", "count", "count_max", "count_last")
}
MULTIKEY, MULTIVALUE, VARTRACK, KV, RECALL, COUNT, COUNT_MAX, COUNT_LAST = PHRASINGS.values()


def train_phrasings(eval_phrasing: int = EVAL_PHRASING) -> tuple[int, ...]:
    """The training phrasings in the order `train_phrasings` takes them. A family that holds out another
    phrasing than 3 trains on 3 in that one's place, so the draws (and every other family's rows) are unchanged."""
    return tuple(EVAL_PHRASING if p == eval_phrasing else p for p in TRAIN_PHRASINGS)


def pick_phrasing(
    rng: random.Random,
    split: str,
    n_train: int = 3,
    held_out: bool = True,
    eval_phrasing: int = EVAL_PHRASING,
) -> int:
    """One of the first `n_train` training phrasings drawn at random; for eval, the held-out one (no draw),
    or, with `held_out` False (a diagnostic), a training phrasing drawn as for training.

    `rng.choice` of a 3-tuple draws exactly as v1 and v2 drew from (0, 1, 2), so their rows stay the same."""
    if split == "train" or not held_out:
        return rng.choice(train_phrasings(eval_phrasing)[:n_train])
    return eval_phrasing


def phrase(
    table: tuple[tuple[str, ...], ...], rng: random.Random, split: str, wording: Wording, family: str = ""
) -> tuple:
    """A phrasing of `table`, `family`'s (pick_phrasing); its last field, the answer lead-in, is "" under
    shared_lead."""
    held = wording.eval_phrasing(family)
    row = table[pick_phrasing(rng, split, wording.train_phrasings, wording.held_out_phrasing, held)]
    return (*row[:-1], "") if wording.shared_lead else row


class Codes:
    """Distinct random values within one row, so no answer is also a distractor's value."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.used = rng, set()

    def number(self, digits: int = 5) -> str:
        """A number of `digits` digits (no leading zero); one token per digit."""
        while (c := str(self.rng.randint(10 ** (digits - 1), 10**digits - 1))) in self.used:
            pass
        self.used.add(c)
        return c

    def token(self, length: int, alphabet: str = "hex") -> str:
        # Hex-like strings (or digit strings): several tokens each, so value_len scales what must be copied.
        chars = ALPHABETS[alphabet]
        while (c := "".join(self.rng.choices(chars, k=length))) in self.used:
            pass
        self.used.add(c)
        return c


def multikey(
    rng: random.Random, names: list[str], codes: Codes, split: str, wording: Wording = Wording()
) -> list[Fact]:
    facts = []
    for k in names:
        s, q, lead = phrase(MULTIKEY, rng, split, wording, "multikey")
        v = codes.number()
        question = Question("multikey", _q(q.format(k=k), lead.format(k=k)), f" {v}", [0])
        facts.append(Fact("multikey", [s.format(k=k, v=v)], [rng.random()], [question]))
    return facts


def statement_depths(rng: random.Random, n: int, adjacent: bool) -> list[float]:
    """Where a fact's `n` statements go: sorted random depths, or with `adjacent` one depth for all, so the
    statements sit back to back in the order given (`lemo.eval.suite.layout` keeps ties in order)."""
    return [rng.random()] * n if adjacent else sorted(rng.random() for _ in range(n))


def multivalue(
    rng: random.Random, names: list[str], codes: Codes, n_values: int, digits: int, split: str,
    wording: Wording = Wording(), adjacent: bool = False,
) -> list[Fact]:  # fmt: skip
    facts = []
    for k in names:
        s, q, lead = phrase(MULTIVALUE, rng, split, wording, "multivalue")
        values = [codes.number(digits) for _ in range(n_values)]
        depths = statement_depths(rng, n_values, adjacent)  # listed in order of appearance
        question = Question(
            "multivalue", _q(q.format(k=k), lead.format(k=k)), " " + ", ".join(values), list(range(n_values))
        )
        facts.append(Fact("multivalue", [s.format(k=k, v=v) for v in values], depths, [question]))
    return facts


def vartrack(
    rng: random.Random, chains: list[list[str]], codes: Codes, split: str, digits: int = 5,
    wording: Wording = Wording(),
) -> list[Fact]:  # fmt: skip
    facts = []
    for names in chains:
        first, copy, q, lead = phrase(VARTRACK, rng, split, wording, "vartrack")
        v = codes.number(digits)
        statements = [first.format(a=names[0], v=v)]
        statements += [copy.format(a=a, b=b) for a, b in itertools.pairwise(names)]
        # Each link lands after the one it copies from, so the chain reads forwards like a program.
        depths = sorted(rng.random() for _ in statements)
        z = names[-1]
        question = Question(
            "vartrack", _q(q.format(z=z), lead.format(z=z)), f" {v}", list(range(len(statements)))
        )
        facts.append(Fact("vartrack", statements, depths, [question]))
    return facts


def kv_block(
    rng: random.Random,
    keys: list[str],
    codes: Codes,
    value_len: int,
    n_asked: int,
    split: str,
    alphabet: str = "hex",
    wording: Wording = Wording(),
) -> Fact:
    """One structured block (a single statement) with `keys`; `n_asked` of them are asked about."""
    opening, pair, sep, closing, q, lead = phrase(KV, rng, split, wording, "kv")
    values = [codes.token(value_len, alphabet) for _ in keys]
    body = sep.join(pair.format(k=k, v=v) for k, v in zip(keys, values, strict=True))
    block = opening.format() + body + closing.format()
    asked = rng.sample(range(len(keys)), min(n_asked, len(keys)))
    questions = [
        Question("kv", _q(q.format(k=keys[i]), lead.format(k=keys[i])), f" {values[i]}", [0]) for i in asked
    ]
    return Fact("kv", [block], [rng.random()], questions)


def count(
    rng: random.Random, names: list[str], count_max: int, split: str, words: bool = False,
    wording: Wording = Wording(), adjacent: bool = False,
) -> list[Fact]:  # fmt: skip
    facts = []
    for k in names:
        s, q, lead = phrase(COUNT, rng, split, wording, "count")
        c = rng.randint(1, count_max)  # the answer is the number alone: chance is 1 / count_max
        answer = f" {NUMBER_WORDS[c - 1] if words else c}"  # a word is one token, and never a copied digit
        question = Question("count", _q(q.format(k=k), lead.format(k=k)), answer, list(range(c)))
        facts.append(Fact("count", [s.format(k=k)] * c, statement_depths(rng, c, adjacent), [question]))
    return facts


def count_values(
    rng: random.Random, names: list[str], codes: Codes, count_max: int, split: str, wording: Wording = Wording(),
    adjacent: bool = False, form: str = "max",
) -> list[Fact]:  # fmt: skip
    """The counting family's value forms: 2..count_max statements about each name, each with its own 2-digit value,
    asked for the largest ("max") or for the one stated last ("last": each statement updates the name's value).
    The answer is one of the context's values, so a guess among the name's values scores about 1 / c, and a model
    that finds the name but does not aggregate shows as another value of the context."""
    table = {"max": COUNT_MAX, "last": COUNT_LAST}[form]
    facts = []
    for k in names:
        s, q, lead = phrase(table, rng, split, wording, "count")
        values = [codes.number(2) for _ in range(rng.randint(2, count_max))]
        depths = statement_depths(rng, len(values), adjacent)  # sorted: the statements appear in list order
        answer = f" {max(values, key=int) if form == 'max' else values[-1]}"
        # every value is evidence: the largest, or the last, is known only against the others
        question = Question("count", _q(q.format(k=k), lead.format(k=k)), answer, list(range(len(values))))
        facts.append(Fact("count", [s.format(k=k, v=v) for v in values], depths, [question]))
    return facts


def recall_question(
    quote: str, answer: str, rng: random.Random, split: str, wording: Wording = Wording()
) -> Question:
    """The question about a quoted filler sentence; its evidence is filler, placed by the caller."""
    q, lead = phrase(RECALL, rng, split, wording, "recall")
    if wording.recall_echo:
        # The answer line picks the quote up again ("Answer: ... if not the present"): the words before the
        # answer then match the context, so the continuation can be copied as a model continues any repeat. The
        # sentence's closing mark opens the answer (". The names"): an echo ending in "." read as a finished
        # answer, and a model trained briefly on the CPU put a newline after it 7 times of 8.
        words = quote.split()[-wording.recall_echo :]
        mark = re.search(r"[^\w]*$", words[-1])[0]
        echo = "... " + " ".join([*words[:-1], words[-1][: len(words[-1]) - len(mark)]])
        lead, answer = (f"{lead} {echo}" if lead else echo), mark + answer
    return Question("recall", _q(q.format(s=quote), lead), answer, [])
