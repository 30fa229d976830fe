import torch

from lemo.ops import blocks_to_tokens, blocks_with_any, dilate_scores, select_by_ratio, select_by_threshold


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


def test_priority_blocks_come_before_the_scorer_within_the_budget():
    scores = torch.tensor([0.0, 9.0, 8.0, 7.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    priority = torch.zeros(10, dtype=torch.bool)
    priority[[6, 7]] = True
    kept = select_by_ratio(scores, 0.5, 1, 1, priority=priority)
    # 5 blocks: sink 0 and local 9, the labelled 6 and 7, then the best other: 1
    assert kept.tolist() == [0, 1, 6, 7, 9]


def test_priority_beyond_the_budget_is_cut_by_score_and_never_exceeds_it():
    scores = torch.arange(10.0)
    every = torch.ones(10, dtype=torch.bool)  # plain text: every block holds a label
    assert select_by_ratio(scores, 0.4, 1, 1, priority=every).tolist() == [0, 7, 8, 9]
    assert torch.equal(select_by_ratio(scores, 0.4, 1, 1, priority=every), select_by_ratio(scores, 0.4, 1, 1))


def test_random_fraction_one_draws_uniformly_and_honours_the_budget():
    nb, counts = 20, torch.zeros(20)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2000):
        kept = select_by_ratio(torch.arange(float(nb)), 0.5, 1, 1, random_fraction=1.0, generator=gen)
        assert (
            len(kept) == 10 and kept[0] == 0 and kept[-1] == nb - 1 and kept.tolist() == sorted(kept.tolist())
        )
        counts[kept] += 1
    share = counts[1:-1] / 2000  # 8 of the 18 free blocks per draw: 0.444 each
    assert (
        share - 8 / 18
    ).abs().max() < 0.05  # no position is favoured, though the scores rise with position


def test_random_fraction_mixes_the_top_blocks_with_random_ones_reproducibly():
    scores = torch.arange(20.0)
    a = select_by_ratio(scores, 0.5, 0, 0, random_fraction=0.5, generator=torch.Generator().manual_seed(3))
    b = select_by_ratio(scores, 0.5, 0, 0, random_fraction=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and len(a) == 10
    assert set(range(15, 20)) <= set(a.tolist())  # the 5 best are always kept; 5 more drawn from the rest


def test_random_draws_never_take_priority_places():
    priority = torch.zeros(30, dtype=torch.bool)
    priority[20:26] = True
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        kept = select_by_ratio(
            torch.zeros(30), 0.4, 1, 1, priority=priority, random_fraction=1.0, generator=gen
        )
        assert len(kept) == 12 and set(range(20, 26)) <= set(kept.tolist())


def test_threshold_keeps_priority_blocks():
    scores = torch.tensor([1.0, 10.0, 0.0, 0.0])
    priority = torch.tensor([False, False, True, False])
    assert select_by_threshold(scores, 0.5, 0, 0, priority=priority).tolist() == [1, 2]


def test_blocks_with_any_marks_partial_blocks():
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[5, 9]] = True
    assert blocks_with_any(mask, 4).tolist() == [False, True, True]


def test_dilation_raises_each_score_to_the_best_of_its_neighbours():
    scores = torch.tensor([0.0, 1.0, 0.0, 0.0, 7.0, 0.0, 0.0, 2.0])
    assert dilate_scores(scores, 0) is scores
    assert dilate_scores(scores, 1).tolist() == [1.0, 1.0, 1.0, 7.0, 7.0, 7.0, 2.0, 2.0]
    assert dilate_scores(scores, 2).tolist() == [1.0, 1.0, 7.0, 7.0, 7.0, 7.0, 7.0, 2.0]
    assert dilate_scores(torch.zeros(0), 1).numel() == 0
    half = scores.to(torch.bfloat16)
    assert dilate_scores(half, 1).dtype == torch.bfloat16


def test_dilated_scores_keep_the_peak_with_its_neighbours():
    scores = torch.tensor([0.0, 0.1, 0.2, 0.0, 9.0, 0.3, 0.0, 0.0, 0.4, 0.0])
    # alone the best three are 4, 8, 5; dilated, the peak's neighbours 3 and 5 tie with it and come first
    assert select_by_ratio(scores, 0.3, 0, 0).tolist() == [4, 5, 8]
    assert select_by_ratio(dilate_scores(scores, 1), 0.3, 0, 0).tolist() == [3, 4, 5]
