"""lemo.eval.evidence: evidence spans as token masks, and the hook that hands them to the selection."""

from __future__ import annotations

import pytest
import torch

from lemo.eval.evidence import EvidenceTable, evidence_token_mask, install_evidence_hook, record_evidence
from lemo.eval.suite_rows import text_form, training_rows


@pytest.fixture(scope="module")
def record(austen_dir, tok):
    text = (austen_dir / "emma.txt").read_text(encoding="utf-8")[:80_000]
    return training_rows([text], tok, 4096, 1, seed=3)[0]


def test_token_mask_marks_exactly_the_tokens_of_each_span(tok):
    text = "Filler words here. The secret code of Alice is 12345. More filler after it."
    s = text.index("The secret")
    e = text.index("12345.") + len("12345.")
    mask = evidence_token_mask(tok, text, [[s, e]])
    ids = tok.encode(text, add_special_tokens=False)
    assert mask.shape == (len(ids),) and mask.dtype == torch.bool
    marked = tok.decode([i for i, m in zip(ids, mask.tolist(), strict=True) if m])
    assert marked.strip() == "The secret code of Alice is 12345."
    assert "Filler" not in marked and "More" not in marked


def test_record_mask_points_at_the_fact_tokens_in_both_forms(record, tok):
    ids, mask = record_evidence(record, tok)
    t_ids, t_mask = record_evidence(text_form(record), tok)
    n = len(tok.encode(record["prompt"], add_special_tokens=False)) - 1  # before the prompt/completion seam
    assert ids[:n] == t_ids[:n] and torch.equal(mask[:n], t_mask[:n])
    assert not mask[n + 1 :].any()  # the completion is never evidence (label priority keeps it)
    marked = tok.decode([i for i, m in zip(ids, mask.tolist(), strict=True) if m])
    for s, e in record["evidence"]:
        assert " ".join(record["prompt"][s:e].split()) in " ".join(marked.split())
    assert 0 < int(mask.sum()) < 0.25 * len(ids)


def test_table_finds_a_row_by_its_tokens_and_pads_the_rest(record, tok):
    table = EvidenceTable([record], tok)
    ids, mask = record_evidence(record, tok)
    T = len(ids) + 5
    row = torch.tensor(ids + [0] * 5)  # [T]: pack mode pads the row's tail
    other = torch.randint(0, 1000, (T,))
    got = table.mask_for(torch.stack([row, other]))  # [2, T]
    assert got.shape == (2, T) and torch.equal(got[0, : len(ids)], mask)
    assert not got[0, len(ids) :].any() and not got[1].any()
    assert table.mask_for(other[None]) is None
    tampered = row.clone()
    tampered[-10] += 1  # the same opening, another record: no match
    assert table.mask_for(tampered[None]) is None


def test_hook_sets_the_evidence_mask_before_each_forward(record, tok):
    from lemo import SparsityConfig, apply
    from lemo.integrations.transformers.patch import sparsity_state
    from lemo.testing import tiny_model

    model = tiny_model(layers=2, vocab=len(tok))
    apply(model, SparsityConfig(block_size=64))
    state = sparsity_state(model)
    table = EvidenceTable([record], tok)
    install_evidence_hook(model, table)
    seen = []
    model.model.layers[0].register_forward_pre_hook(lambda *_: seen.append(state.evidence_mask))
    ids, mask = record_evidence(record, tok)
    with torch.no_grad():
        model(input_ids=torch.tensor([ids]))
        model(input_ids=torch.tensor([ids[1:]]))  # a row the table does not know
    assert torch.equal(seen[0][0], mask) and seen[1] is None
