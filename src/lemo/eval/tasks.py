"""RULER-style synthetic long-context tasks, built in token space so every length is exact.

A sample is filler text (e.g. a novel) with short statements, the *needles*, spliced in at sentence starts,
then a question; the prompt ends exactly before the answer. Five tasks:

- ``single``: one needle "The secret code of NAME is NNNNN.";
- ``multikey``: ``n_keys`` such needles with distinct names, one of them queried;
- ``multivalue``: ``n_values`` needles "One of the secret codes of NAME is NNNNN." for one name; the answer
  lists every code in order of appearance;
- ``vartrack``: "VAR ABCDE = NNNNN." and a chain of ``n_hops`` "VAR FGHIJ = VAR ABCDE." (RULER's variable
  tracking), plus ``n_chains - 1`` distractor chains; the question asks for the last variable's value;
- ``passkey``: "The pass key is NNNNN. Remember it. NNNNN is the pass key."

The question follows the context as "\\nQuestion: ...?\\nAnswer: <the answer's lead-in>", and the answer is
the value text alone (" 48213"), which is what teacher-forced scoring covers. Training rows
(`training_records`) end every answer with a full stop; the eval answer is that row's text up to the stop.

Held out by construction: names (and variable names) come from disjoint train/eval pools
(`lemo.eval.names`); codes are random 5-digit numbers from a seeded `random.Random`.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lemo.config.eval import TASKS
from lemo.eval.filler import Filler, encode, snap, special_prefix
from lemo.eval.names import Split, sample_names, sample_variables


@dataclass
class TaskSample:
    """One evaluation sample; `prompt_ids + answer_ids` is what the model scores."""

    task: str
    prompt: str
    """The context and question as text (decoded from `prompt_ids`, without special tokens)."""
    answer: str
    """The value text that follows the prompt, e.g. " 48213" (multivalue: " 12345, 67890, ...")."""
    prompt_ids: list[int]
    """Token ids of the prompt, starting with the tokenizer's special prefix (BOS) when it has one."""
    answer_ids: list[int]
    """`tokenizer.encode(answer, add_special_tokens=False)`."""
    length: int
    """len(prompt_ids) + len(answer_ids): the requested length, never above it."""
    depth: float
    """Requested relative position of the queried needle in the context (0 = start, 1 = end)."""
    key: str
    """What the question asks about: a name, a variable name, or "pass key"."""
    needle: str
    """The queried needle's text (for multivalue: the needle at `depth`; vartrack: the value assignment)."""
    needle_pos: int
    """Index in `prompt_ids` of the queried needle's first token."""
    actual_depth: float
    """Where the queried needle landed: its offset in the context over the context's length."""


@dataclass
class _Fact:
    """Statements (needles) at relative depths, and the question they answer."""

    needles: list[str]
    depths: list[float]
    question: str  # ends right before the answer
    answer: str  # value text, leading space, no full stop
    key: str


def _codes(rng: random.Random, n: int, used: set[int]) -> list[str]:
    out = []
    while len(out) < n:
        c = rng.randint(10000, 99999)
        if c not in used:
            used.add(c)
            out.append(str(c))
    return out


def _secret_fact(name: str, code: str, depth: float) -> _Fact:
    return _Fact(
        [f"The secret code of {name} is {code}."],
        [depth],
        f"\nQuestion: What is the secret code of {name}?\nAnswer: The secret code of {name} is",
        f" {code}",
        name,
    )


def _multivalue_fact(name: str, codes: list[str], depths: list[float]) -> _Fact:
    # Codes are dealt in order of depth, so "in order of appearance" is the order of `codes`.
    order = sorted(range(len(depths)), key=lambda i: depths[i])
    ordered = [codes[order.index(i)] for i in range(len(depths))]
    return _Fact(
        [f"One of the secret codes of {name} is {c}." for c in ordered],
        depths,
        f"\nQuestion: What are all the secret codes of {name}?\nAnswer: The secret codes of {name} are",
        " " + ", ".join(codes),
        name,
    )


def _vartrack_fact(names: list[str], code: str, depths: list[float]) -> _Fact:
    needles = [f"VAR {names[0]} = {code}."]
    needles += [f"VAR {b} = VAR {a}." for a, b in itertools.pairwise(names)]
    last = names[-1]
    return _Fact(
        needles,
        depths,
        f"\nQuestion: What is the value of VAR {last}?\nAnswer: The value of VAR {last} is",
        f" {code}",
        last,
    )


def _passkey_fact(code: str, depth: float) -> _Fact:
    return _Fact(
        [f"The pass key is {code}. Remember it. {code} is the pass key."],
        [depth],
        "\nQuestion: What is the pass key?\nAnswer: The pass key is",
        f" {code}",
        "pass key",
    )


def _facts(
    task: str,
    rng: random.Random,
    split: Split,
    n_facts: int,
    first_depth: float | None,
    n_values: int,
    n_hops: int,
) -> list[_Fact]:
    """`n_facts` facts with fresh keys and codes. The first fact's first needle goes at `first_depth`
    (None: random, like every other needle); all other depths are uniform in [0, 1]."""
    check_task(task)
    used: set[int] = set()

    def depth(i: int, j: int) -> float:
        return first_depth if (i, j) == (0, 0) and first_depth is not None else rng.random()

    if task == "passkey":
        return [_passkey_fact(_codes(rng, 1, used)[0], depth(0, 0))]
    if task in ("single", "multikey"):
        names = sample_names(rng, n_facts, split)
        return [_secret_fact(nm, _codes(rng, 1, used)[0], depth(i, 0)) for i, nm in enumerate(names)]
    if task == "multivalue":
        names = sample_names(rng, n_facts, split)
        return [
            _multivalue_fact(nm, _codes(rng, n_values, used), [depth(i, j) for j in range(n_values)])
            for i, nm in enumerate(names)
        ]
    variables = sample_variables(rng, n_facts * (n_hops + 1), split)
    return [
        _vartrack_fact(
            variables[i * (n_hops + 1) : (i + 1) * (n_hops + 1)],
            _codes(rng, 1, used)[0],
            [depth(i, j) for j in range(n_hops + 1)],
        )
        for i in range(n_facts)
    ]


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"--task {task!r} is unknown; use one of {', '.join(TASKS)}.")


def _splice(
    filler: Filler, start: int, n_filler: int, facts: list[_Fact], needle_ids: list[list[list[int]]]
) -> tuple[list[int], int]:
    """Filler window of `n_filler` tokens with every needle at the start nearest its depth.

    Returns the context ids and the offset of the first fact's first needle in them.
    """
    window, sentences, words = filler.window(start, n_filler)
    spots = []  # (filler position, depth, fact, needle): ties at one position keep the depth order
    for f, fact in enumerate(facts):
        for j, d in enumerate(fact.depths[1:] if f == 0 else fact.depths, start=1 if f == 0 else 0):
            spots.append((snap(round(d * n_filler), sentences, words, n_filler), d, f, j))
    # The anchor's depth is relative to the whole context, needles included: aim its filler position so
    # that it plus the needle tokens before it lands at depth x context length (two refinements suffice,
    # since moving past a needle changes the count by one needle).
    depth = facts[0].depths[0]
    n_context = n_filler + sum(len(n) for f in needle_ids for n in f)
    pos = snap(round(depth * n_filler), sentences, words, n_filler)
    for _ in range(2):
        before = sum(len(needle_ids[f][j]) for p, d, f, j in spots if (p, d) < (pos, depth))
        target = min(n_filler, max(0, round(depth * n_context) - before))
        pos = snap(target, sentences, words, n_filler)
    # Keep the anchor between its own fact's shallower and deeper needles: multivalue's answer lists the
    # codes in depth order, which must stay the order of appearance.
    lo = max((p for p, d, f, _ in spots if f == 0 and d < depth), default=0)
    hi = min((p for p, d, f, _ in spots if f == 0 and d > depth), default=n_filler)
    spots.append((min(max(pos, lo), hi), depth, 0, 0))
    spots.sort()
    out: list[int] = []
    anchor, prev = -1, 0
    for pos, _d, f, j in spots:
        out.extend(window[prev:pos])
        if (f, j) == (0, 0):
            anchor = len(out)
        out.extend(needle_ids[f][j])
        prev = pos
    out.extend(window[prev:])
    return out, anchor


def make_sample(
    task: str,
    filler: Filler,
    tokenizer: Any,
    length: int,
    depth: float,
    rng: random.Random,
    split: Split = "eval",
    n_keys: int = 16,
    n_values: int = 4,
    n_hops: int = 4,
    n_chains: int = 1,
) -> TaskSample:
    """One sample of `length` tokens whose queried needle sits at relative `depth` of the context.

    Args:
        n_keys: needles of ``multikey`` (one queried, the rest distractors).
        n_values: codes of ``multivalue``.
        n_hops: "VAR B = VAR A." links of each ``vartrack`` chain.
        n_chains: ``vartrack`` chains (one queried, the rest distractors).
    """
    check_task(task)
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth {depth} is outside [0, 1]; pass --depths between 0 and 1.")
    n_facts = {"multikey": n_keys, "vartrack": n_chains}.get(task, 1)
    if n_facts < 1 or n_values < 1 or n_hops < 0:
        raise ValueError("n_keys, n_values and n_chains must be >= 1 and n_hops >= 0.")
    facts = _facts(task, rng, split, n_facts, depth, n_values, n_hops)
    queried = facts[0]
    needle_ids = [[encode(tokenizer, " " + s) for s in f.needles] for f in facts]
    prefix = special_prefix(tokenizer)
    question_ids = encode(tokenizer, queried.question)
    answer_ids = encode(tokenizer, queried.answer)
    fixed = len(prefix) + sum(len(n) for f in needle_ids for n in f) + len(question_ids) + len(answer_ids)
    n_filler = length - fixed
    if n_filler < 0:
        raise ValueError(
            f"length {length} is too short for {task}: its needles, question and answer take {fixed} "
            f"tokens; pass longer --lengths or fewer keys (--n-keys / --n-values / --n-hops / --n-chains)."
        )
    context, anchor = _splice(filler, filler.random_start(rng), n_filler, facts, needle_ids)
    prompt_ids = prefix + context + question_ids
    return TaskSample(
        task=task,
        prompt=tokenizer.decode(context + question_ids),
        answer=queried.answer,
        prompt_ids=prompt_ids,
        answer_ids=answer_ids,
        length=len(prompt_ids) + len(answer_ids),
        depth=depth,
        key=queried.key,
        needle=queried.needles[0],
        needle_pos=len(prefix) + anchor,
        actual_depth=anchor / max(1, len(context)),
    )


def cell_rng(seed: int, task: str, length: int, depth: float, index: int) -> random.Random:
    """The generator of one sample: a function of its cell and index only, so adding lengths or depths to a
    run leaves the other cells' samples unchanged (string seeds hash with SHA-512, not PYTHONHASHSEED)."""
    return random.Random(f"{seed}/{task}/{length}/{depth:.6f}/{index}")


def make_samples(
    task: str,
    filler: Filler,
    tokenizer: Any,
    lengths: Sequence[int],
    depths: Sequence[float],
    samples_per_cell: int,
    seed: int = 0,
    split: Split = "eval",
    **options: int,
) -> list[TaskSample]:
    """`samples_per_cell` samples for every (length, depth); `options` go to `make_sample`."""
    return [
        make_sample(task, filler, tokenizer, n, d, cell_rng(seed, task, n, d, i), split, **options)
        for n in lengths
        for d in depths
        for i in range(samples_per_cell)
    ]


def training_records(
    task: str,
    filler_texts: Sequence[str],
    tokenizer: Any,
    seq_len: int,
    n_rows: int,
    keys_per_row: int = 16,
    seed: int = 0,
    n_values: int = 4,
    n_hops: int = 4,
) -> list[dict[str, str]]:
    """Rows for a training JSONL: {"prompt": context with the facts, "completion": every question answered}.

    Each row has `keys_per_row` facts (``single`` and ``passkey``: one, since a context has one pass key) at
    uniformly random depths, names from the *train* pool, and filler from `filler_texts` at a seeded random
    offset. The completion asks about every fact in a shuffled order, each as
    "\\nQuestion: ...?\\nAnswer: <lead-in> <value>." (the eval prompt's format plus the answer and a full stop).
    prompt + completion take at most `seq_len` tokens, counting the tokenizer's special prefix and one EOS,
    and usually within a few tokens of it.
    """
    check_task(task)
    if seq_len < 1 or n_rows < 1 or keys_per_row < 1:
        raise ValueError("--seq-len, --rows and --keys must be >= 1.")
    n_facts = 1 if task in ("single", "passkey") else keys_per_row
    filler = Filler.from_texts(filler_texts, tokenizer)
    reserve = len(special_prefix(tokenizer)) + 1  # + EOS, which trainers append after the completion
    rng = random.Random(f"{seed}/{task}/train")
    rows = []
    for _ in range(n_rows):
        facts = _facts(task, rng, "train", n_facts, None, n_values, n_hops)
        order = list(range(len(facts)))
        rng.shuffle(order)
        completion = "".join(facts[i].question + facts[i].answer + "." for i in order)
        needle_ids = [[encode(tokenizer, " " + s) for s in f.needles] for f in facts]
        fixed = reserve + sum(len(n) for f in needle_ids for n in f) + len(encode(tokenizer, completion))
        if fixed > seq_len // 2:
            fit = max(1, n_facts * seq_len // (2 * fixed))
            raise ValueError(
                f"--seq-len {seq_len} is too short for {n_facts} keys of {task}: the facts and questions "
                f"take {fixed} tokens, over half the row; use --keys {fit} or fewer, or a longer --seq-len."
            )
        start = filler.random_start(rng)
        n_filler = seq_len - fixed
        # Decoding and re-encoding can merge or split a few tokens at the splice points; shrink the filler
        # until the text, as a trainer will tokenize it, fits.
        for _attempt in range(8):
            context, _ = _splice(filler, start, n_filler, facts, needle_ids)
            prompt = tokenizer.decode(context).lstrip()
            used = reserve + max(
                len(encode(tokenizer, prompt)) + len(encode(tokenizer, completion)),
                len(encode(tokenizer, prompt + completion)),
            )
            if used <= seq_len:
                break
            n_filler -= used - seq_len
        else:
            raise RuntimeError(f"could not fit a {task} row into {seq_len} tokens; report this as a bug.")
        rows.append({"prompt": prompt, "completion": completion})
    return rows
