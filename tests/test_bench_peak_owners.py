"""lemo.bench.peak_owners: the live set at the peak of an allocator history, grouped by the code that made it."""

from __future__ import annotations

import pytest
import torch

from lemo.bench.peak_owners import live_at_peak, owner, peak_owners

LEMO = {"filename": "/x/site-packages/lemo/sparsity/select.py", "line": 10, "name": "score"}
HF = {
    "filename": "/x/site-packages/transformers/models/llama/modeling_llama.py",
    "line": 5,
    "name": "forward",
}
TORCH = {"filename": "/x/site-packages/torch/nn/functional.py", "line": 1, "name": "linear"}


def _alloc(addr, size, *frames):
    return {"action": "alloc", "addr": addr, "size": size, "frames": list(frames)}


def _free(addr):
    return {"action": "free_requested", "addr": addr}


def test_owner_is_the_innermost_frame_of_a_known_package():
    assert owner([TORCH, LEMO, HF]) == "lemo/sparsity/select.py:10 score"
    assert owner([TORCH, HF]) == "transformers/models/llama/modeling_llama.py:5 forward"
    assert owner([TORCH]) == "other"


def test_the_live_set_is_taken_at_the_largest_total():
    events = [
        _alloc(1, 100, LEMO),
        _alloc(2, 300, HF),
        _free(2),  # total back to 100
        _alloc(3, 250, TORCH, LEMO),  # 350: below the 400 peak
        {"action": "free_completed", "addr": 3},  # not a user free: ignored
        _alloc(4, 10, TORCH),
    ]
    peak, live = live_at_peak(events)
    assert peak == 400 and sorted(e["addr"] for e in live) == [1, 2]


def test_rows_rank_owners_and_sum_the_rest():
    gib = 2**30
    events = [_alloc(1, 3 * gib, LEMO), _alloc(2, gib, HF), _alloc(3, gib, LEMO), _alloc(4, gib // 2, TORCH)]
    rows = peak_owners({"device_traces": [events]}, top=1)
    assert rows[0] == {"owner": "lemo/sparsity/select.py:10 score", "gib": 4.0, "share": 4 / 5.5, "count": 2}
    assert rows[1]["owner"] == "(rest)" and rows[1]["gib"] == pytest.approx(1.5) and rows[1]["count"] == 2
    assert peak_owners({"device_traces": []}) == [] and peak_owners({}) == []


@pytest.mark.gpu
def test_a_real_snapshot_has_the_fields_it_reads():
    """The replay reads torch's own snapshot format (a CPU build records no CUDA history)."""
    # Selected with -m gpu: a machine without CUDA is a failure, not a silent skip.
    if not torch.cuda.is_available():
        pytest.fail("this test needs a CUDA GPU; run it on the device machine (make test-gpu)")
    from lemo.bench.peak_owners import record_peak_owners

    rows = record_peak_owners(lambda: torch.empty(2**20, device="cuda").sum().item())
    assert rows and rows[0]["gib"] > 0
