"""`SparsityConfig(copy_ngram=n)`: in prompt/completion rows the context blocks holding an n-gram that the labelled
positions repeat are kept right after the labelled blocks, in forward and backward elimination; in plain text the
earlier occurrences of far repeats are kept first; frequent n-grams are left alone."""

from __future__ import annotations

import pytest
import torch

import lemo
from lemo.sparsity.supervision import copy_sources, ngram_ids, repeat_sources
from lemo.testing import tiny_model
from lemo.testing import with_lora as lora

T, B, PROMPT = 320, 16, 240
QUOTE = [250, 251, 252]  # a 3-gram no random context token can form (those are < 200)


def test_copy_sources_marks_the_context_copies_of_labelled_ngrams():
    ids = torch.tensor([[5, 6, 7, 8, 1, 2, 3, 9, 9, 5, 6, 7, 4]])
    labelled = torch.zeros(1, 13, dtype=torch.bool)
    labelled[0, 9:] = True
    assert copy_sources(ids, labelled, 3)[0].int().tolist() == [1, 1, 1] + [0] * 10
    assert not copy_sources(ids, labelled, 3, max_repeats=1).any()  # [5, 6, 7] occurs twice
    assert not copy_sources(ids, labelled, 14).any()  # longer than the row
    assert not copy_sources(ids, torch.zeros_like(labelled), 3).any()  # nothing labelled, nothing copied


@pytest.mark.parametrize("bad", [1, -2, 2.5])
def test_bad_lengths_name_the_fix(bad):
    with pytest.raises(
        ValueError, match=r"copy_ngram=.* must be 0 \(off\) or an n-gram length .*--copy-ngram 3"
    ):
        lemo.SparsityConfig(copy_ngram=bad)


# form -> (where the context holds the 3-gram, where it is repeated, the block it is in): the answer copies it in
# prompt/completion, plain text repeats it 270 tokens later (repeat_sources needs 256)
PLACES = {"sup": (40, 260, 2), "text": (20, 290, 1)}


def _row(seed: int, form: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A row of random tokens that repeats the 3-gram its context holds, as `form` (labels: the completion in
    prompt/completion, every position in plain text)."""
    source, copy, _ = PLACES[form]
    ids = torch.randint(0, 200, (1, T), generator=torch.Generator().manual_seed(seed))
    ids[0, source : source + 3] = torch.tensor(QUOTE)
    ids[0, copy : copy + 3] = torch.tensor(QUOTE)
    labels = ids.clone()
    if form == "sup":
        labels[0, :PROMPT] = -100
    return ids, labels


def _kept(model, ids, labels) -> set[int]:
    model(input_ids=ids, labels=labels).loss.backward()
    stats = lemo.stats(model)
    return set(stats[min(stats)]["blocks"][0])


@pytest.mark.parametrize("form", ["sup", "text"])
@pytest.mark.parametrize("elimination", ["forward", "backward"])
def test_the_copied_block_is_kept_within_the_budget(elimination, form):
    """Prompt/completion: after the labelled blocks; plain text: first (its label tier, every block, would hide
    it). Random blocks alone miss it in some of the rows."""
    torch.manual_seed(0)
    model = lora(tiny_model("llama", layers=3)).train()
    fields = {"block_size": B, "keep_ratio": 0.5, "sparse_layers": "all", "random_fraction": 1.0,
              "elimination": elimination}  # fmt: skip
    block = PLACES[form][2]
    labelled = set(range((PROMPT - 1) // B, T // B)) if form == "sup" else set()
    missed = 0
    for seed in range(8):
        ids, labels = _row(seed, form)
        lemo.apply(model, lemo.SparsityConfig(**fields, copy_ngram=0))
        missed += block not in _kept(model, ids, labels)
        lemo.remove(model)
        lemo.apply(model, lemo.SparsityConfig(**fields, copy_ngram=3, copy_plain_text=form == "text"))
        kept = _kept(model, ids, labels)
        assert block in kept and labelled <= kept, (seed, sorted(kept))
        assert len(kept) == T // B // 2  # within the same budget
        lemo.remove(model)
    assert missed > 0


def test_plain_text_has_no_copy_tier_unless_asked():
    """By default the tier applies to prompt/completion rows only: plain text chooses as with copy_ngram=0."""
    model = lora(tiny_model("llama", layers=3)).train()
    fields = {"block_size": B, "keep_ratio": 0.5, "sparse_layers": "all"}
    ids, labels = _row(0, "text")
    chosen = []
    for extra in ({"copy_ngram": 0}, {}, {"copy_plain_text": True}):
        torch.manual_seed(0)  # the same random draws for each
        lemo.apply(model, lemo.SparsityConfig(**fields, **extra))
        chosen.append(_kept(model, ids, labels))
        lemo.remove(model)
    assert chosen[0] == chosen[1]
    assert PLACES["text"][2] in chosen[2]  # asked for, the tier keeps the source
    with pytest.raises(ValueError, match=r"copy_plain_text=True needs copy_ngram .*--copy-ngram 3"):
        lemo.SparsityConfig(copy_ngram=0, copy_plain_text=True)


def test_repeat_sources_mark_the_earlier_occurrence_of_a_far_repeat():
    ids = torch.randint(0, 200, (1, 400), generator=torch.Generator().manual_seed(0))
    ids[0, 20:23] = torch.tensor(QUOTE)
    ids[0, 300:303] = torch.tensor(QUOTE)  # 280 tokens later
    marked = repeat_sources(ids, 3)[0]
    assert marked[20:23].all() and not marked[300:303].any()  # the source, not the copy
    assert not repeat_sources(ids, 3, min_gap=300)[0, 20:23].any()  # too near


def test_ngram_ids_are_exact_for_a_large_vocabulary_and_long_ngrams():
    vocab = 128256  # Llama-3's: vocab**4 overflows int64
    row = torch.tensor(
        [vocab - 1, vocab - 2, vocab - 3, vocab - 4, 7, vocab - 1, vocab - 2, vocab - 3, vocab - 4]
    )
    ids = ngram_ids(row, 4, vocab)  # [6]
    assert ids[0] == ids[5] and len(set(ids.tolist())) == 5
    assert ngram_ids(row, 1, vocab).tolist() == row.tolist()


def test_repeat_sources_with_copies_mark_both_ends_of_a_far_repeat():
    ids = torch.randint(0, 200, (1, 400), generator=torch.Generator().manual_seed(0))
    ids[0, 20:23] = torch.tensor(QUOTE)
    ids[0, 300:303] = torch.tensor(QUOTE)
    marked = repeat_sources(ids, 3, copies=True)[0]
    assert marked[20:23].all() and marked[300:303].all()
    assert marked.sum() == 6  # random tokens below 200 form no far 3-gram repeat
    assert not repeat_sources(ids, 3, min_gap=300, copies=True).any()  # too near


def test_copy_repeats_keeps_the_copying_block_in_plain_text():
    """Plain text: the tier keeps the text that repeats a far source, not only the source (the rows' ends)."""
    model = lora(tiny_model("llama", layers=3)).train()
    fields = {"block_size": B, "keep_ratio": 0.25, "sparse_layers": "all", "random_fraction": 1.0}
    source, copy, _ = PLACES["text"]
    missed = 0
    for seed in range(8):
        ids, labels = _row(seed, "text")
        torch.manual_seed(seed)
        lemo.apply(model, lemo.SparsityConfig(**fields, copy_plain_text=True))
        missed += copy // B not in _kept(model, ids, labels)
        lemo.remove(model)
        torch.manual_seed(seed)
        lemo.apply(model, lemo.SparsityConfig(**fields, copy_plain_text=True, copy_repeats=True))
        kept = _kept(model, ids, labels)
        assert {source // B, copy // B, (copy + 2) // B} <= kept, (seed, sorted(kept))
        assert len(kept) == T // B // 4  # within the same budget
        lemo.remove(model)
    assert missed > 0  # the sources alone leave the copy to chance
    with pytest.raises(ValueError, match=r"copy_repeats=True needs copy_plain_text=True .*--copy-plain-text"):
        lemo.SparsityConfig(copy_repeats=True)
