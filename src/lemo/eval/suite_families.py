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
import random
from dataclasses import dataclass

from lemo.config.suite import ALPHABETS, EVAL_PHRASING, NUMBER_WORDS, TRAIN_PHRASINGS, SuiteConfig

N_PHRASINGS = len(TRAIN_PHRASINGS) + 1  # every table below: the training phrasings and the held-out one


@dataclass(frozen=True)
class Wording:
    """The wording knobs of `SuiteConfig`: how many training phrasings to draw from, whether every question
    ends at a bare "Answer:" instead of its phrasing's lead-in, and whether eval holds its phrasing out. The
    defaults word v1 and v2."""

    train_phrasings: int = 3
    shared_lead: bool = False
    held_out_phrasing: bool = True

    @classmethod
    def of(cls, cfg: SuiteConfig) -> Wording:
        return cls(cfg.train_phrasings, cfg.shared_lead, cfg.held_out_phrasing)


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


# (statement, question, answer lead-in) per phrasing; {k} = name, {v} = value.
MULTIKEY = (
    ("The secret code of {k} is {v}.", "What is the secret code of {k}?", "The secret code of {k} is"),
    ("{k}'s locker number is {v}.", "Which locker number belongs to {k}?", "{k}'s locker number is"),
    ("For the record, {k} holds ticket {v}.", "What ticket does {k} hold?", "{k} holds ticket"),
    (
        "Keep in mind that the badge of {k} reads {v}.",
        "What does the badge of {k} read?",
        "The badge of {k} reads",
    ),
    (
        "The safe of {k} opens with the combination {v}.",
        "Which combination opens the safe of {k}?",
        "The combination for {k} is",
    ),
    (
        "Note: {k} was issued membership card number {v}.",
        "What membership card number was {k} issued?",
        "{k}'s card number is",
    ),
    ("{v} is the PIN that {k} chose.", "Which PIN did {k} choose?", "{k} chose the PIN"),
)
MULTIVALUE = (
    (
        "One of the secret codes of {k} is {v}.",
        "What are all the secret codes of {k}?",
        "The codes of {k} are",
    ),
    (
        "{k} also has a phone extension {v}.",
        "List every phone extension of {k}.",
        "The extensions of {k} are",
    ),
    ("Another room booked by {k} is room {v}.", "Which rooms has {k} booked?", "The rooms of {k} are"),
    (
        "A parcel for {k} carries the tracking number {v}.",
        "Which tracking numbers do the parcels for {k} carry?",
        "The tracking numbers for {k} are",
    ),
    ("{k} once wore the jersey number {v}.", "Which jersey numbers has {k} worn?", "The jerseys of {k} are"),
    ("Invoice {v} was paid by {k}.", "Name all the invoices that {k} paid.", "{k} paid the invoices"),
    (
        "Among the flights {k} took was flight {v}.",
        "On which flights did {k} travel?",
        "The flights of {k} are",
    ),
)
# (first assignment {a} = {v}, copy {b} <- {a}, question about {z}, lead-in)
VARTRACK = (
    ("VAR {a} = {v}.", "VAR {b} = VAR {a}.", "What is the value of VAR {z}?", "The value of VAR {z} is"),
    ("Let {a} be {v}.", "Let {b} be equal to {a}.", "What number does {z} hold?", "{z} holds"),
    ("{a} is set to {v}.", "{b} is set to the value of {a}.", "What is {z} set to?", "{z} is set to"),
    ("Assign {v} to {a}.", "Copy {a} into {b}.", "What ends up stored in {z}?", "{z} stores"),
    ("{a} := {v}.", "{b} := {a}.", "What does {z} evaluate to?", "{z} evaluates to"),
    (
        "The register {a} now contains {v}.",
        "The register {b} now contains whatever {a} contains.",
        "What does register {z} contain?",
        "Register {z} contains",
    ),
    (
        "Put the number {v} in box {a}.",
        "Box {b} gets the same number as box {a}.",
        "Which number is in box {z}?",
        "Box {z} has",
    ),
)
# A block of key-value pairs in one structured format: (opening, pair, separator, closing, question, lead-in)
KV = (
    (
        "{{",
        '"{k}": "{v}"',
        ", ",
        "}}",
        'In the JSON record, what is the value of "{k}"?',
        'The value of "{k}" is',
    ),
    ("settings = {{", "'{k}': '{v}'", ", ", "}}", "What does settings['{k}'] hold?", "settings['{k}'] holds"),
    ("[keys]\n", "{k} = {v}", "\n", "\n[end]", "Which entry does the [keys] table give for {k}?", "It gives"),
    (
        "<entries>",
        '<entry name="{k}" value="{v}"/>',
        "",
        "</entries>",
        "What value has the entry {k}?",
        "Value",
    ),
    # YAML, a CSV table and a list of Python calls: three more formats, none of them XML (held out).
    ("---\n", "{k}: {v}", "\n", "\n...", "What does the YAML document map {k} to?", "It maps {k} to"),
    (
        "key,value\n",
        "{k},{v}",
        "\n",
        "\n(end of table)",
        "In the CSV table, which value is in the row of {k}?",
        "The row of {k} holds",
    ),
    ("calls = [", 'put("{k}", {v})', ", ", "]", 'Which number was put under "{k}"?', 'Under "{k}" went'),
)
RECALL = (
    ('What sentence follows "{s}"?', "The sentence that follows begins:"),
    ('In the text, which words come right after "{s}"?', "Right after it comes:"),
    ('Continue the passage from "{s}".', "It continues:"),
    ('Which words immediately succeed the line "{s}"?', "The line is followed by:"),
    ('Quote the words that the narrator writes after "{s}".', "The narrator goes on:"),
    ('"{s}" What comes next?', "Next comes:"),
    ('Find "{s}" in the story and give the next words.', "The next words are:"),
)
COUNT = (
    ("{k} visited the museum.", "How many times did {k} visit the museum?", "The number of visits by {k} is"),
    (
        "{k} sent a letter to the editor.",
        "How many letters did {k} send to the editor?",
        "The count for {k} is",
    ),
    ("{k} rang the bell.", "How often did {k} ring the bell?", "{k} rang it this many times:"),
    (
        "{k} planted a tree in the garden.",
        "Count the trees {k} planted in the garden.",
        "The tree total of {k} is",
    ),
    ("{k} knocked on the door.", "How many knocks on the door came from {k}?", "The knocks from {k} number"),
    ("{k} baked a loaf of bread.", "How many loaves did {k} bake?", "{k} baked this many loaves:"),
    ("The dog barked at {k}.", "How many times did the dog bark at {k}?", "Times the dog barked at {k}:"),
)


def pick_phrasing(rng: random.Random, split: str, n_train: int = 3, held_out: bool = True) -> int:
    """One of the first `n_train` training phrasings drawn at random; for eval, the held-out one (no draw),
    or, with `held_out` False (a diagnostic), a training phrasing drawn as for training.

    `rng.choice` of a 3-tuple draws exactly as v1 and v2 drew from (0, 1, 2), so their rows stay the same."""
    if split == "train" or not held_out:
        return rng.choice(TRAIN_PHRASINGS[:n_train])
    return EVAL_PHRASING


def phrase(table: tuple[tuple[str, ...], ...], rng: random.Random, split: str, wording: Wording) -> tuple:
    """A phrasing of `table` (pick_phrasing); its last field, the answer lead-in, is "" under shared_lead."""
    row = table[pick_phrasing(rng, split, wording.train_phrasings, wording.held_out_phrasing)]
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
        s, q, lead = phrase(MULTIKEY, rng, split, wording)
        v = codes.number()
        question = Question("multikey", _q(q.format(k=k), lead.format(k=k)), f" {v}", [0])
        facts.append(Fact("multikey", [s.format(k=k, v=v)], [rng.random()], [question]))
    return facts


def multivalue(
    rng: random.Random, names: list[str], codes: Codes, n_values: int, digits: int, split: str,
    wording: Wording = Wording(),
) -> list[Fact]:  # fmt: skip
    facts = []
    for k in names:
        s, q, lead = phrase(MULTIVALUE, rng, split, wording)
        values = [codes.number(digits) for _ in range(n_values)]
        depths = sorted(rng.random() for _ in range(n_values))  # listed in order of appearance
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
        first, copy, q, lead = phrase(VARTRACK, rng, split, wording)
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
    opening, pair, sep, closing, q, lead = phrase(KV, rng, split, wording)
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
    wording: Wording = Wording(),
) -> list[Fact]:  # fmt: skip
    facts = []
    for k in names:
        s, q, lead = phrase(COUNT, rng, split, wording)
        c = rng.randint(1, count_max)  # the answer is the number alone: chance is 1 / count_max
        answer = f" {NUMBER_WORDS[c - 1] if words else c}"  # a word is one token, and never a copied digit
        question = Question("count", _q(q.format(k=k), lead.format(k=k)), answer, list(range(c)))
        facts.append(Fact("count", [s.format(k=k)] * c, sorted(rng.random() for _ in range(c)), [question]))
    return facts


def recall_question(
    quote: str, answer: str, rng: random.Random, split: str, wording: Wording = Wording()
) -> Question:
    """The question about a quoted filler sentence; its evidence is filler, placed by the caller."""
    q, lead = phrase(RECALL, rng, split, wording)
    return Question("recall", _q(q.format(s=quote), lead), answer, [])
