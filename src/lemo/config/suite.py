"""`SuiteConfig`: the capability suite's difficulty knobs (docs/suite.md), its presets, and the vocabularies its
knobs choose from (the families, the alphabets of structured values, the words counts are spelled in)."""

from __future__ import annotations

import copy
import dataclasses
import string
from dataclasses import dataclass
from typing import Any

from lemo.config.load import DictConfig

FAMILIES = ("multikey", "multivalue", "vartrack", "kv", "recall", "count")
ALPHABETS = {"hex": string.ascii_lowercase[:6] + string.digits, "digits": string.digits}
COUNT_FORMS = ("count", "max", "last")
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
# Each family's phrasings (lemo.eval.suite_families): 3 is held out (every eval sample, no training row). The
# training phrasings are listed in the order `train_phrasings` takes them: 0-2 are v1's and v2's, 4-6 came later
# and sit after the held-out one so that its index, and every row made before, stay as they were.
TRAIN_PHRASINGS = (0, 1, 2, 4, 5, 6)
EVAL_PHRASING = 3

# The knobs of suite v1, which ran once on the H200 at commit cd5902a (benchmarks/results/suite_smollm2.csv,
# whose `suite` column reads "{}": these values). Dense LoRA at 60 steps scored 0.80 exact match at 16K on
# multikey and 0.00-0.03 on the other five families, so v2 (the defaults) shortens what must be copied.
V1 = dict(
    multikey_keys=8, multivalue_keys=2, multivalue_values=4, multivalue_digits=5, vartrack_chains=2,
    vartrack_hops=3, vartrack_digits=5, kv_blocks=1, kv_pairs=12, kv_asked=4, kv_value_len=6, kv_alphabet="hex",
    recall_quotes=4, recall_words=5, count_keys=3, count_max=4, count_words=False,
)  # fmt: skip
# Suite v3: what `suite.py sizing choose` picked at commit 3380c6e (benchmarks/results/suite_v3_sizing_chosen.json,
# from suite_v3_sizing_smollm2.csv): six training wordings with one shared "Answer:" lead, variable tracking as a
# plain fact. The suite of suite_v3_smollm2.csv, where dense LoRA scored 0.57 on multikey and 0.00-0.19 elsewhere.
V3 = dict(shared_lead=True, train_phrasings=6, vartrack_chains=1, vartrack_hops=0)
# Suite v4: v3 with counts in digits. In v3 four families' answers start with SmolLM2's bare space token (" 76638"
# is " " + digits) and a count (" three") is one word token, so after the shared "Answer:" a model trained on
# the rows predicts the space and a count can never be right (CPU, 2K rows, 60 steps: " " first in 6 of 8 count
# questions; dense LoRA scored 0.00 on counting in every v3 run). A count in digits starts like the others.
V4 = dict(V3, count_words=False)
# Suite v5: v4 on unwrapped filler. The novels wrap their lines and put two spaces after a full stop, while a
# recall question quotes its sentence with single spaces: the quote was never the same tokens as the context
# (checked on 4 of 4 held-out samples at 2K), so recall asked the model to match text it could not copy: part of
# why dense LoRA scored 0.00 on it in every run of v1-v4, even in the training wording (v5 alone did not fix it).
V5 = dict(V4, unwrap_filler=True)
# Suite v6: v5 with recall's answer line echoing the quote's last 4 words. After 60 rows of 2K on the CPU, v5's
# recall stayed near v4's (first answer token right 1 of 8; suite_first_token_cpu.csv): the model answered a
# generic " She" rather than the quote's continuation, across the "?\nAnswer:" between quote and answer. An
# echo that kept the sentence's full stop read as a finished answer (a newline first, 7 of 8), so the mark
# opens the answer instead.
V6 = dict(V5, recall_echo=4)
# Suite v7: v6 with more questions per row where the v7 sizing run put them (suite_v7_sizing_smollm2.csv, H200,
# 81fe8bf; `sizing choose` -> benchmarks/results/suite_v7_sizing_chosen.json): 9 counts, 4 multi-value keys and 16
# recall quotes per row. No rung sized every family; these came closest (count 0.38, recall 0.17 exact match).
V7 = dict(V6, count_keys=9, multivalue_keys=4, recall_quotes=16)
# Suite v8: v7 with easier forms where the v8 sizing run put them (suite_v8_sizing_smollm2.csv, H100, a6b294c;
# `sizing choose` -> benchmarks/results/suite_v8_sizing_chosen.json): multi-value and counted statements back to
# back, variable tracking holding out a name-first wording, key-value lookup holding out YAML with 2-digit values.
V8 = dict(
    V7, count_adjacent=True, multivalue_adjacent=True, kv_value_len=2, held_out={"kv": 4, "vartrack": 5}
)
# Suite v9: v8 with counting and recall stated in the context's second half and key-value lookup in its last
# quarter, where the v9 sizing run put them (suite_v9_sizing_smollm2.csv, H100, 5a76af8; `sizing choose` ->
# benchmarks/results/suite_v9_sizing_chosen.json). On v8's rows dense LoRA answered multi-key, variable tracking
# and recall about half as often when the evidence was over 8K tokens back (SmolLM2's native length) as when it
# was nearer; multi-key and variable tracking stay anywhere, the suite's far-context test.
V9 = dict(V8, depth_band={"count": (0.5, 1.0), "kv": (0.75, 1.0), "recall": (0.5, 1.0)})
# Suite v10: v9 with key-value lookup holding out CSV rows (INI's and YAML's `k = v`, `k: v` lines are trained),
# where the v10 sizing run put it (suite_v10_sizing_smollm2.csv, H100, 7722ac0; `sizing choose` ->
# benchmarks/results/suite_v10_sizing_chosen.json): 0.18 against YAML's 0.06-0.10, still under 0.4. In their
# training wordings dense LoRA scored 0.26 on key-value lookup and 0.25 on multi-value, so neither miss is only
# the held-out wording; shorter multi-value values scored less (2 digits 0.01, 1 digit 0.00), so v10 keeps 3.
V10 = dict(V9, held_out={"kv": 5, "vartrack": 5})
# Suite v12 (the v11 sizing run, longer values, chose nothing): v10 with key-value blocks of 3 rows, every one asked,
# where the v12 sizing run put it (suite_v12_sizing_smollm2.csv, H100, e5c7844; `sizing choose` ->
# benchmarks/results/suite_v12_sizing_chosen.json). Dense LoRA's wrong lookups went wrong at the value's first
# digit (answer_errors_probe.py): it found the wrong row, so fewer rows lifted it from 0.22 to 0.48-0.52, the first
# preset with key-value lookup in [0.4, 0.9].
V12 = dict(V10, kv_pairs=3, kv_asked=3)
# Suite v14 (the v13 sizing run, counting's "max" form, chose nothing): v12 with counting's "last" form (2-5 updates
# of each of 5 names, scattered) and 2 multi-value keys in the context's last quarter. At 60 steps no rung sized
# counting or multi-value (suite_v14_sizing_smollm2.csv, H100, e55aa46); at 120 steps this one sized all six families
# at 16K (suite_v14_lengths_smollm2.csv, 5e8b9af; `sizing choose` -> benchmarks/results/suite_v14_sizing_chosen.json):
# the suite v14 runs 120 steps (docs/suite.md).
V14 = dict(
    V12, count_form="last", count_max=5, count_keys=5, count_adjacent=False, multivalue_keys=2,
    depth_band={**V12["depth_band"], "multivalue": (0.75, 1.0)},
)  # fmt: skip
PRESETS: dict[str, dict[str, Any]] = {
    "v1": V1, "v2": {}, "v3": V3, "v4": V4, "v5": V5, "v6": V6, "v7": V7, "v8": V8, "v9": V9, "v10": V10,
    "v12": V12, "v14": V14,
}  # fmt: skip


def _is_band(band: Any) -> bool:
    """[lo, hi] with 0 <= lo < hi <= 1."""
    ok = isinstance(band, list | tuple) and len(band) == 2
    return ok and all(isinstance(x, int | float) for x in band) and 0.0 <= band[0] < band[1] <= 1.0


@dataclass
class SuiteConfig(DictConfig):
    """Difficulty knobs: what one context holds, and how its questions are worded. The same context serves
    training (every fact asked) and eval (one question of one family), so a knob moves both, except
    `train_phrasings` (training rows; eval too without `held_out_phrasing`) and `held_out_phrasing` (eval
    samples only). The defaults are preset v2 (docs/suite.md)."""

    families: tuple[str, ...] = FAMILIES
    preset: str = "v2"
    """The preset the knobs started from (a label: the knobs below are what runs)."""
    multikey_keys: int = 8
    """Facts "KEY -> number"; eval asks one, the others are distractors."""
    multivalue_keys: int = 2
    multivalue_values: int = 2
    """Values per multivalue key; the answer lists them all in order of appearance."""
    multivalue_digits: int = 3
    vartrack_chains: int = 2
    vartrack_hops: int = 1
    """Copies after the first assignment in each chain."""
    vartrack_digits: int = 3
    kv_blocks: int = 1
    kv_pairs: int = 6
    """Pairs per structured block."""
    kv_asked: int = 4
    """Pairs of each block asked about in a training row."""
    kv_value_len: int = 3
    """Characters of each structured value (several tokens: the model must copy all of them)."""
    kv_alphabet: str = "digits"
    """"digits" or "hex". The tokenizer splits digits one by one, so a digit value tokenizes the same inside
    quotes and after the answer's space; a hex value does not (v1's kv scored 0.47 token accuracy)."""
    recall_quotes: int = 4
    recall_words: int = 2
    """Words of the following text that make the answer."""
    recall_quote_words: tuple[int, int] = (8, 30)
    """Length range, in words, of a quotable sentence."""
    count_keys: int = 3
    count_max: int = 3
    """Each counted key is mentioned 1..count_max times; chance is 1 / count_max."""
    count_words: bool = True
    """Answer " two" rather than " 2": after training on digit answers copied from the context, v1's digit
    count scored 0.00 at 16K, below its chance of 0.25 (a copied digit, not a count)."""
    train_phrasings: int = 3
    """Training phrasings each family draws from, 1..6: the first that many of phrasings 0, 1, 2, 4, 5, 6 (3 is
    held out). v1 and v2 train on 3; v2 scored about 0 at 16K under the held-out phrasing on five families of
    six, so more wordings may teach the skill rather than the wording. Held-out eval samples ignore it."""
    shared_lead: bool = False
    """Every question, in every phrasing, ends "\\nAnswer:" and the answer follows it directly. Otherwise each
    phrasing has its own lead-in ("The tree total of K is"), which the model must also generalise to the
    held-out one. The answers keep their leading space (" 123", " two"), so they tokenize the same."""
    unwrap_filler: bool = False
    """Join each paragraph's wrapped lines and collapse runs of spaces in the filler before it is tokenized
    (paragraphs stay apart), and take only recall sites whose quote and answer are the context's own tokens, so
    a quoted sentence can be found by copying. Off (v1-v4): the quote differs from the context at every line
    break and double space."""
    recall_echo: int = 0
    """Recall's answer line repeats the quote's last this many words without its closing mark, which opens the
    answer ("Answer: ... if not the present" + ". The names"), so the answer follows words that match the
    context, as in a plain continuation; 0 (v1-v5): the answer follows "Answer:" alone and the model must find
    the quote's end across the question."""
    multivalue_adjacent: bool = False
    """A key's values are stated back to back at one depth, not scattered: after the first value, the next is a
    few tokens on, so listing them is a copy rather than a second search (v8's easier form)."""
    count_adjacent: bool = False
    """A name's mentions are back to back at one depth: counting a run of 1..count_max equal sentences found by
    the name, rather than mentions scattered over the context (v8's easier form)."""
    count_form: str = "count"
    """What the counting family asks of a name's mentions: "count" (how many: 1..count_max equal sentences) or
    "max" (the largest of 2..count_max distinct 2-digit values stated about the name, an aggregation whose answer
    is a copy) or "last" (the value stated last, each statement an update: an aggregation over the mentions'
    order). SmolLM2-135M did not learn to count in 60 steps (it answered a constant), nor "max" at 16K
    (docs/suite.md, v13); "last" asks whether the order of mentions, which attention's recency favours, is."""
    held_out: dict[str, int] = dataclasses.field(default_factory=dict)
    """family -> the phrasing its eval samples hold out, instead of 3; the family then trains on 3 in that one's
    place. In v1-v7 variable tracking held out its only value-first wording ("Assign V to A."), where a lookup by
    the name must copy what came before it: dense LoRA scored 0.31 in the training wording and 0.02 in that one
    (suite_v3_sizing_smollm2.csv)."""
    depth_band: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    """family -> (lo, hi): the relative depths of the context where its statements (recall: its quoted
    sentences) sit, instead of anywhere in [0, 1]. (0.5, 1.0) puts them in the context's second half, so at 16K a
    question after the context looks back at most about 8K tokens, SmolLM2's native length, rather than up to 16K
    through YaRN's extension. The other families' draws are unchanged (the depths are rescaled, not redrawn)."""
    train_families: tuple[str, ...] | None = None
    """The families training rows hold; None: all of `families`. The others are held out whole: their facts
    and questions appear only in eval samples, so their scores say what training on the rest carries over to a
    task the adapter never saw (a held-out family, beside the held-out phrasings, names and filler)."""
    held_out_phrasing: bool = True
    """False: eval samples draw their phrasing from the training ones, as training rows do (names and filler
    stay held out). A diagnostic, not a suite: with it, a low score means the model did not learn the skill,
    rather than that it did not carry it over to a new wording."""

    @classmethod
    def from_preset(cls, preset: str = "v2", **knobs: Any) -> SuiteConfig:
        """Preset `preset`'s knobs, overridden by `knobs`."""
        if preset not in PRESETS:
            raise ValueError(f"suite preset {preset!r}: use one of {', '.join(PRESETS)}.")
        # a copy: a preset's dict knob (held_out) must not be the config's own, which a caller may change
        return cls(**{**copy.deepcopy(PRESETS[preset]), **knobs, "preset": preset})

    @classmethod
    def v1(cls) -> SuiteConfig:
        return cls.from_preset("v1")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown or not self.families:
            raise ValueError(f"families {unknown or '()'}: use some of {', '.join(FAMILIES)}.")
        counts = {k: v for k, v in dataclasses.asdict(self).items() if isinstance(v, int)}
        if any(v < 0 for v in counts.values()) or self.recall_words < 1 or self.count_max < 1:
            raise ValueError(f"suite knobs must be >= 0 (recall_words, count_max >= 1): {counts}")
        if min(self.multivalue_digits, self.vartrack_digits, self.kv_value_len) < 1:
            raise ValueError("multivalue_digits, vartrack_digits and kv_value_len must be >= 1.")
        if self.kv_alphabet not in ALPHABETS:
            raise ValueError(f"kv_alphabet {self.kv_alphabet!r}: use one of {', '.join(ALPHABETS)}.")
        if self.count_form not in COUNT_FORMS:
            raise ValueError(f"count_form {self.count_form!r}: use one of {', '.join(COUNT_FORMS)}.")
        if self.count_form != "count" and self.count_max < 2:
            raise ValueError(
                f"count_form {self.count_form!r} compares 2..count_max values: set count_max >= 2."
            )
        if self.count_form != "count" and self.count_keys * self.count_max > 60:
            # a row's 2-digit values are distinct (90 of them, shared with the other families): more would never end
            raise ValueError(
                f"count_form {self.count_form!r} draws distinct 2-digit values: keep count_keys * count_max <= 60."
            )
        if self.count_words and self.count_max > len(NUMBER_WORDS):
            raise ValueError(f"count_words spells counts up to {len(NUMBER_WORDS)}: lower count_max.")
        if not 1 <= self.train_phrasings <= len(TRAIN_PHRASINGS):
            raise ValueError(
                f"train_phrasings {self.train_phrasings}: each family has 1..{len(TRAIN_PHRASINGS)} training "
                "phrasings (phrasing 3 is held out)."
            )
        bad = {
            f: p
            for f, p in self.held_out.items()
            if f not in FAMILIES or p not in (EVAL_PHRASING, *TRAIN_PHRASINGS)
        }
        if bad:
            raise ValueError(
                f"held_out {bad}: map a family ({', '.join(FAMILIES)}) to a phrasing 0..{len(TRAIN_PHRASINGS)}."
            )
        bad_band = {f: b for f, b in self.depth_band.items() if f not in FAMILIES or not _is_band(b)}
        if bad_band:
            raise ValueError(
                f"depth_band {bad_band}: map a family ({', '.join(FAMILIES)}) to [lo, hi] with 0 <= lo < hi <= 1."
            )
        if self.train_families is not None:
            self.train_families = tuple(self.train_families)  # a list after a JSON round trip
            outside = sorted(set(self.train_families) - set(self.families))
            if outside or not self.train_families:
                raise ValueError(
                    f"train_families {list(self.train_families)}: name some of families "
                    f"({', '.join(self.families)}); the rest of them are held out of training."
                )
        # tuples of floats, as a preset writes them; JSON hands over lists
        self.depth_band = {f: (float(b[0]), float(b[1])) for f, b in self.depth_band.items()}
        self.recall_quote_words = tuple(self.recall_quote_words)  # a list after a JSON round trip

    def for_training(self) -> SuiteConfig:
        """The config training rows are drawn with: `families` narrowed to `train_families`, if set."""
        if self.train_families is None:
            return self
        return dataclasses.replace(self, families=self.train_families, train_families=None)

    def held_out_families(self) -> tuple[str, ...]:
        """The families eval asks about that no training row holds."""
        return tuple(f for f in self.families if f not in self.for_training().families)

    def n_facts(self, family: str) -> int:
        """Keys (or chains, blocks, quotes) of `family` in one context; 0 when the family is off."""
        if family not in self.families:
            return 0
        return {
            "multikey": self.multikey_keys,
            "multivalue": self.multivalue_keys,
            "vartrack": self.vartrack_chains,
            "kv": self.kv_blocks,
            "recall": self.recall_quotes,
            "count": self.count_keys,
        }[family]
