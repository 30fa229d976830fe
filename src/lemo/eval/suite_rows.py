"""The capability suite's training rows (both forms, with evidence spans) and eval samples (held out).

- `training_rows`: {"prompt", "completion", "evidence"} records. The prompt is filler (training novels) with
  every family's facts in training phrasings and train-pool names; the completion answers every question, as
  "\\nQuestion: ...\\nAnswer: <lead-in> <value>." in a shuffled order. "evidence" lists the [start, end) character
  spans of the prompt that the answers need (the statements, the quoted sentences and the words after them);
  "evidence_by_family" the same spans per family, from that family's facts alone (a family's spans are not
  merged with another's, so they need not be among "evidence"'s). `text_form` turns a record into the
  plain-text form of the same row (the spans stay valid: the prompt is a prefix of the text).
- `eval_samples`: `TaskSample`s of exactly `length` tokens: the same kind of context in the held-out phrasing,
  with eval-pool names and held-out filler, ending with one question of one family.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from lemo.config import SuiteConfig
from lemo.eval import suite_families as fam
from lemo.eval.filler import Filler, encode, special_prefix, unwrap
from lemo.eval.names import Split
from lemo.eval.suite import Layout, draw_facts, layout, statement_groups
from lemo.eval.tasks import TaskSample

RECALL_RESERVE = 64  # tokens a recall question may take beyond its template, before its quote is known
FIT_SLACK = 8  # a training row ends at most this many tokens short of seq_len (when the search converges)


def suite_filler(texts: Sequence[str] | str, tokenizer: Any, cfg: SuiteConfig) -> Filler:
    """The filler of `cfg`'s rows: the texts as they are, or unwrapped (`SuiteConfig.unwrap_filler`)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    return Filler.from_texts([unwrap(t) for t in texts] if cfg.unwrap_filler else texts, tokenizer)


def _questions(
    facts: list[fam.Fact], lay: Layout, split: Split, rng: random.Random, cfg: SuiteConfig
) -> list[tuple]:
    """(question, evidence groups) for every fact and recall site of the context."""
    groups = statement_groups(facts)
    out = [(q, [g[i] for i in q.evidence]) for f, g in zip(facts, groups, strict=True) for q in f.questions]
    for site in lay.recall:
        q = fam.recall_question(site.quote, site.answer, rng, split, fam.Wording.of(cfg))
        out.append((q, [site.quote_group, site.answer_group]))
    return out


def _group_families(qs: list[tuple]) -> dict[int, set[str]]:
    """Evidence group -> the families of the questions that need it (one in practice: each group is one
    fact's statement or one recall site's quote or answer)."""
    out: dict[int, set[str]] = {}
    for q, gs in qs:
        for g in gs:
            out.setdefault(g, set()).add(q.family)
    return out


def _merge(spans: list[tuple[int, int]], cut: int) -> list[list[int]]:
    """Character spans (in text order) shifted left by `cut`, merged when adjacent or one space apart."""
    merged: list[list[int]] = []
    for s, e in spans:
        s, e = max(0, s - cut), e - cut
        if merged and s <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged


def _text_with_spans(
    tokenizer: Any, lay: Layout, wanted: dict[int, set[str]]
) -> tuple[str, list[list[int]], dict[str, list[list[int]]]]:
    """The context decoded piece by piece (pieces start at word boundaries, so this is its text), the
    character spans of the wanted evidence groups (`wanted`: group -> families), merged when adjacent, and the
    same per family from that family's groups alone: a statement often lands right before a recall quote, and
    merged with it, so a family's share of the evidence could not be told from the merged spans."""
    text, spans = "", []
    for ids, gid in lay.pieces:
        piece = tokenizer.decode(ids)
        if gid in wanted:
            lead = len(piece) - len(piece.lstrip())  # the statement's leading space is not evidence
            spans.append((len(text) + lead, len(text) + len(piece), wanted[gid]))
        text += piece
    cut = len(text) - len(text.lstrip())
    families = sorted({f for _, _, fams in spans for f in fams})
    by_family = {f: _merge([(s, e) for s, e, fams in spans if f in fams], cut) for f in families}
    return text[cut:], _merge([(s, e) for s, e, _ in spans], cut), by_family


def training_row(filler: Filler, tokenizer: Any, seq_len: int, seed: str, cfg: SuiteConfig) -> dict[str, Any]:
    """One training record of at most `seq_len` tokens (with the special prefix and one EOS), usually within
    a few tokens of it; a function of `seed` only."""
    cfg = cfg.for_training()  # a held-out family (train_families) never reaches a training row
    rng = random.Random(seed)
    facts = draw_facts(rng, cfg, "train")
    start, layout_seed = filler.random_start(rng), rng.random()
    n_recall = cfg.n_facts("recall")
    statements = sum(len(encode(tokenizer, " " + s)) for f in facts for s in f.statements)
    base_q = sum(len(encode(tokenizer, q.text + q.answer + ".")) for f in facts for q in f.questions)
    reserve = len(special_prefix(tokenizer)) + 1  # + the EOS trainers append
    fixed = reserve + statements + base_q + n_recall * RECALL_RESERVE
    if fixed > seq_len // 2:
        raise ValueError(
            f"seq_len {seq_len} is too short for the suite's facts ({fixed} tokens, over half the row); "
            "lower the SuiteConfig counts or raise the length."
        )
    n_filler, best, best_used, step = seq_len - fixed, None, 0, 1.0
    for _attempt in range(16):
        lay = layout(filler, tokenizer, start, n_filler, facts, n_recall, random.Random(layout_seed), cfg)
        qs = _questions(facts, lay, "train", random.Random(f"{seed}/questions"), cfg)
        order = list(range(len(qs)))
        random.Random(f"{seed}/order").shuffle(order)
        completion = "".join(qs[i][0].text + qs[i][0].answer + "." for i in order)
        prompt, spans, by_family = _text_with_spans(tokenizer, lay, _group_families(qs))
        used = reserve + max(
            len(encode(tokenizer, prompt)) + len(encode(tokenizer, completion)),
            len(encode(tokenizer, prompt + completion)),
        )
        if best_used < used <= seq_len:
            families = sorted({q.family for q, _ in qs})
            best = {"prompt": prompt, "completion": completion, "evidence": spans,
                    "evidence_by_family": by_family, "families": families}  # fmt: skip
            best_used = used
        if seq_len - FIT_SLACK <= used <= seq_len:
            break
        # Re-encoding merges a few tokens at the splices: aim again, by smaller steps after an overshoot.
        step = step / 2 if used > seq_len else step
        n_filler -= max(1, round(step * abs(used - seq_len))) * (1 if used > seq_len else -1)
    if best is None:
        raise RuntimeError(f"could not fit a suite row into {seq_len} tokens; report this as a bug.")
    return best


def training_rows(
    texts: Sequence[str],
    tokenizer: Any,
    seq_len: int,
    n_rows: int,
    seed: int = 0,
    cfg: SuiteConfig | None = None,
    first: int = 0,
) -> list[dict[str, Any]]:
    """Training records `first` .. `first + n_rows - 1` of `seed` (prompt/completion form) from the training
    filler `texts`; record i depends on (seed, i, cfg) only, so rows can be made in parallel pieces."""
    cfg = cfg or SuiteConfig()
    filler = suite_filler(texts, tokenizer, cfg)
    return [
        training_row(filler, tokenizer, seq_len, f"suite/{seed}/train/{i}", cfg)
        for i in range(first, first + n_rows)
    ]


def text_form(record: dict[str, Any]) -> dict[str, Any]:
    """The plain-text form of a record: the same row, every token trained on; the spans stay valid, and so do
    the per-family ones."""
    out = {"text": record["prompt"] + record["completion"], "evidence": record["evidence"]}
    if "evidence_by_family" in record:  # records written before the per-family split have none
        out["evidence_by_family"] = record["evidence_by_family"]
    return out


def eval_sample(
    family: str, filler: Filler, tokenizer: Any, length: int, seed: str, cfg: SuiteConfig
) -> TaskSample:
    """A sample of exactly `length` tokens: a held-out context and one question of `family`."""
    if cfg.n_facts(family) == 0:
        raise ValueError(f"family {family!r} is off or has 0 facts in this SuiteConfig.")
    rng = random.Random(seed)
    facts = draw_facts(rng, cfg, "eval")
    start, layout_seed, pick = filler.random_start(rng), rng.random(), rng.random()
    prefix = special_prefix(tokenizer)
    statements = sum(len(encode(tokenizer, " " + s)) for f in facts for s in f.statements)
    n_filler = length - len(prefix) - statements - RECALL_RESERVE // 2
    seen: set[int] = set()
    for _attempt in range(32):
        if n_filler < 1:
            break
        if n_filler in seen:
            # A cycle: a recall site at the window's end comes and goes with its length, and no length between
            # fits exactly. The same start would cycle again: another part of the novel (only ever reached
            # where the samples before this check failed, so every sample made before keeps its tokens).
            start, n_filler = filler.random_start(rng), min(seen)
            seen.clear()
        seen.add(n_filler)
        lay = layout(
            filler, tokenizer, start, n_filler, facts, cfg.n_facts("recall"), random.Random(layout_seed), cfg
        )
        asked = [
            (q, gs)
            for q, gs in _questions(facts, lay, "eval", random.Random(f"{seed}/q"), cfg)
            if q.family == family
        ]
        if not asked:  # no quotable sentence in this window (dialogue): another part of the novel
            start = filler.random_start(rng)
            continue
        q, gs = asked[int(pick * len(asked))]
        context, question, answer = lay.ids, encode(tokenizer, q.text), encode(tokenizer, q.answer)
        total = len(prefix) + len(context) + len(question) + len(answer)
        if total == length:
            return _sample(family, tokenizer, prefix, context, question, answer, q, lay, gs)
        n_filler -= total - length
    raise ValueError(f"length {length} is too short for the suite's facts; lower the SuiteConfig counts.")


def _sample(family, tokenizer, prefix, context, question, answer, q, lay, gs) -> TaskSample:
    first = min(s for g in gs for s, _ in lay.groups.get(g, [(0, 0)]))
    needle = next((tokenizer.decode(p).strip() for p, g in lay.pieces if g in gs), "")
    return TaskSample(
        task=family,
        prompt=tokenizer.decode(context + question),
        answer=q.answer,
        prompt_ids=prefix + context + question,
        answer_ids=answer,
        length=len(prefix) + len(context) + len(question) + len(answer),
        depth=round(first / max(1, len(context)), 1),
        key=q.text.split("\nQuestion: ")[-1].split("\nAnswer:")[0],
        needle=needle,
        needle_pos=len(prefix) + first,
        actual_depth=first / max(1, len(context)),
    )


def eval_samples(
    texts: Sequence[str] | str,
    tokenizer: Any,
    lengths: Sequence[int],
    per_family: int,
    seed: int = 1,
    cfg: SuiteConfig | None = None,
    families: Sequence[str] | None = None,
) -> list[TaskSample]:
    """`per_family` samples per family (`families`, default all of `cfg`'s) and length, from the held-out
    filler `texts`; sample i of a (family, length) cell depends on (seed, family, length, i, cfg) only."""
    cfg = cfg or SuiteConfig()
    filler = suite_filler(texts, tokenizer, cfg)
    return [
        eval_sample(f, filler, tokenizer, n, f"suite/{seed}/eval/{f}/{n}/{i}", cfg)
        for n in lengths
        for f in families or cfg.families
        for i in range(per_family)
    ]
