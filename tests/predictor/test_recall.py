"""Recall on hand-made cases (lemo.predictor.recall defines it: forced sink/local blocks are not counted)."""

import pytest
import torch

from lemo.predictor import block_recall, kept_mask, mass_recall

# nb = 10 blocks, keep ratio 0.4 -> ceil(4.0) = 4 kept: forced block 0 (sink) and 9 (local), plus 2 by score.
ORACLE = torch.tensor([0.0, 9.0, 1.0, 8.0, 2.0, 3.0, 7.0, 0.5, 0.2, 0.0])  # oracle keeps 1 and 3 (+ 0, 9)


def test_kept_mask_is_select_by_ratio():
    assert kept_mask(ORACLE, 0.4).nonzero().flatten().tolist() == [0, 1, 3, 9]


def test_recall_counts_only_the_blocks_the_scorer_chose():
    predicted = torch.tensor([5.0, 9.0, 1.0, 0.0, 2.0, 3.0, 8.0, 0.5, 0.2, 5.0])  # keeps 1 and 6 (+ 0, 9)
    assert block_recall(predicted, ORACLE, 0.4) == pytest.approx(1 / 2)
    # Counting the forced blocks inflates it: 3 of the 4 kept blocks agree.
    assert block_recall(predicted, ORACLE, 0.4, include_forced=True) == pytest.approx(3 / 4)
    # Mass recall: oracle scores of the predictor's choice (9 + 7) over the oracle's own choice (9 + 8).
    assert mass_recall(predicted, ORACLE, 0.4) == pytest.approx(16 / 17)


def test_perfect_and_worst_predictions():
    assert block_recall(ORACLE * 3 + 1, ORACLE, 0.4) == 1.0  # any monotone transform ranks the same
    assert block_recall(-ORACLE, ORACLE, 0.4) == 0.0
    assert block_recall(torch.rand(10), ORACLE, 1.0) == 1.0  # everything kept: nothing can be missed


def test_no_unforced_block_kept_is_vacuous_recall_one():
    # nb = 3 at ratio 0.4 -> ceil(1.2) = 2 < 2 forced blocks: the scorer chooses nothing.
    assert block_recall(torch.tensor([0.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 1.0]), 0.4) == 1.0


def test_other_sink_and_local_settings():
    predicted = torch.tensor([5.0, 9.0, 1.0, 0.0, 2.0, 3.0, 8.0, 0.5, 0.2, 5.0])
    # No forced blocks: the oracle keeps 1, 3, 6, 5; the predictor 1, 6, 0, 9 -> 2 of 4.
    assert block_recall(predicted, ORACLE, 0.4, sink_blocks=0, local_blocks=0) == pytest.approx(2 / 4)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        block_recall(torch.zeros(3), torch.zeros(4), 0.5)
