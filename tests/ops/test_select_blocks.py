import torch

from lemo.ops import blocks_to_tokens, select_by_ratio, select_by_threshold


def test_ratio_keeps_forced_then_best_in_order():
    scores = torch.tensor([0.0, 5.0, 1.0, 9.0, 2.0, 8.0, 3.0, 0.5, 4.0, 0.1])
    kept = select_by_ratio(scores, 0.5, sink_blocks=1, local_blocks=1)
    # 5 blocks: sink 0, local 9, then the three best others: 3 (9.0), 5 (8.0), 1 (5.0)
    assert kept.tolist() == [0, 1, 3, 5, 9]


def test_ratio_rounds_up_and_never_drops_forced():
    scores = torch.arange(10.0)
    assert len(select_by_ratio(scores, 0.11, 0, 0)) == 2  # ceil(1.1)
    assert select_by_ratio(scores, 0.1, sink_blocks=2, local_blocks=2).tolist() == [0, 1, 8, 9]
    assert select_by_ratio(scores, 1.0, 1, 1).tolist() == list(range(10))
    assert select_by_ratio(torch.tensor([3.0]), 0.1, 1, 1).tolist() == [0]


def test_ratio_ties_break_by_position():
    assert select_by_ratio(torch.ones(6), 0.5, 0, 0).tolist() == [0, 1, 2]


def test_threshold_is_relative_to_the_maximum():
    scores = torch.tensor([1.0, 10.0, 4.9, 5.0, 2.0, 0.0])
    assert select_by_threshold(scores, 0.5, 0, 0).tolist() == [1, 3]
    assert select_by_threshold(scores, 0.5, 1, 1).tolist() == [0, 1, 3, 5]
    assert select_by_threshold(scores, 0.0, 0, 0).tolist() == list(range(6))


def test_blocks_to_tokens_clips_the_partial_last_block():
    toks = blocks_to_tokens(torch.tensor([0, 2]), 4, 10)
    assert toks.tolist() == [0, 1, 2, 3, 8, 9]
