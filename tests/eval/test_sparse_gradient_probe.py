"""benchmarks/quality/sparse_gradient_probe.py: the per-layer gradient comparison and its input checks."""

from __future__ import annotations

import math

import pytest
import torch
from tests.eval.conftest import QUALITY, load_script


@pytest.fixture(scope="module")
def probe():
    yield from load_script(QUALITY / "sparse_gradient_probe.py")


def test_compare_gives_cosine_and_norm_ratio_per_layer_and_for_the_whole_adapter(probe):
    dense = {0: torch.tensor([1.0, 0.0]), 1: torch.tensor([0.0, 2.0])}
    other = {0: torch.tensor([2.0, 0.0]), 1: torch.tensor([2.0, 0.0])}  # layer 0 parallel, layer 1 orthogonal
    got = probe.compare(dense, other)
    assert got["0"] == {"cos": pytest.approx(1.0), "norm_ratio": pytest.approx(2.0)}
    assert got["1"]["cos"] == pytest.approx(0.0) and got["1"]["norm_ratio"] == pytest.approx(1.0)
    # the whole adapter: [1, 0, 0, 2] against [2, 0, 2, 0]
    assert got["all"]["cos"] == pytest.approx(2 / (math.sqrt(5) * math.sqrt(8)))
    assert got["all"]["norm_ratio"] == pytest.approx(math.sqrt(8) / math.sqrt(5))


def test_a_layer_without_gradient_counts_as_zero_not_as_missing(probe):
    dense = {0: torch.tensor([1.0, 1.0]), 1: torch.tensor([1.0, 1.0])}
    got = probe.compare(dense, {0: torch.tensor([1.0, 1.0])})  # layer 1 got no gradient at all
    assert math.isnan(got["1"]["cos"]) and got["1"]["norm_ratio"] == 0.0
    assert got["all"]["cos"] == pytest.approx(1 / math.sqrt(2)) and got["all"]["norm_ratio"] == pytest.approx(
        1 / math.sqrt(2)
    )


def test_lora_grads_group_by_decoder_layer_and_skip_frozen_weights(probe):
    class Proj(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lora_A = torch.nn.Linear(2, 1, bias=False)
            self.base = torch.nn.Linear(2, 2, bias=False)  # frozen: no gradient collected

    model = torch.nn.Module()
    model.layers = torch.nn.ModuleList([Proj(), Proj()])
    for i, layer in enumerate(model.layers):
        layer.lora_A.weight.grad = torch.full((1, 2), float(i + 1))
    got = probe.lora_grads(torch.nn.ModuleDict({"model": model}))
    assert sorted(got) == [0, 1] and got[1].tolist() == [2.0, 2.0]


@pytest.mark.parametrize("suite", ["{not json", '{"no_such_knob": 1}', "[1]"])
def test_a_bad_suite_is_refused_with_the_fix(probe, suite, tmp_path):
    with pytest.raises(SystemExit, match="pass a JSON object of SuiteConfig knobs"):
        probe.main(["--suite", suite, "--out", str(tmp_path / "x.csv")])
    assert not (tmp_path / "x.csv").exists()
