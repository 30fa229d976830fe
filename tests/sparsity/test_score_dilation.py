"""`SparsityConfig(score_dilation=...)`: every selection (forward, backward, packed segments) ranks a block by the
best score within that many blocks on either side, so the blocks beside a high-scoring one are kept with it."""

from __future__ import annotations

import torch

from lemo.config import SparsityConfig
from lemo.sparsity.segments import Segment
from lemo.sparsity.selection import select_blocks

B = 64


def _kept(config: SparsityConfig, peaks: dict[int, list[int]], nb: int = 16) -> list[list[int]]:
    """The kept block ids of two segments of `nb` blocks whose scores peak at the given blocks."""
    segs = [Segment(0, 0, nb * B), Segment(1, 0, nb * B)]

    def score(s: int, seg: Segment) -> torch.Tensor:
        out = torch.zeros(nb)  # [nb]
        out[peaks[s]] = torch.arange(len(peaks[s]), 0, -1, dtype=torch.float32)
        return out

    sel = select_blocks(
        segs, nb * B, config, config.keep_ratio, config.threshold, score, [[], []], torch.device("cpu")
    )
    return sel.blocks


def test_dilation_keeps_the_neighbours_of_each_segments_peak():
    fields = {"keep_ratio": 5 / 16, "random_fraction": 0.0, "sink_blocks": 1, "local_blocks": 1}
    peaks = {0: [6, 11, 2], 1: [9, 3, 13]}
    # alone: sink 0, local 15 and each segment's three peaks
    assert _kept(SparsityConfig(**fields), peaks) == [[0, 2, 6, 11, 15], [0, 3, 9, 13, 15]]
    # dilated by one block: the best peak and the block on either side of it
    assert _kept(SparsityConfig(**fields, score_dilation=1), peaks) == [[0, 5, 6, 7, 15], [0, 8, 9, 10, 15]]


def test_dilation_widens_a_threshold_selection_too():
    fields = {"selection": "threshold", "threshold": 0.9, "sink_blocks": 0, "local_blocks": 0}
    peaks = {0: [6], 1: [2]}
    assert _kept(SparsityConfig(**fields), peaks) == [[6], [2]]
    assert _kept(SparsityConfig(**fields, score_dilation=2), peaks) == [[4, 5, 6, 7, 8], [0, 1, 2, 3, 4]]


def test_random_blocks_read_no_scores_so_dilation_changes_nothing():
    fields = {"keep_ratio": 0.5, "random_fraction": 1.0}
    torch.manual_seed(0)
    alone = _kept(SparsityConfig(**fields), {0: [3], 1: [4]})
    torch.manual_seed(0)
    assert _kept(SparsityConfig(**fields, score_dilation=3), {0: [3], 1: [4]}) == alone
