"""Budgeted per-layer keep ratios: the allocation never exceeds its budget and is optimal; YAML round trip."""

import itertools
import random

import pytest
import torch
import yaml

import lemo
from lemo.integrations.transformers.calibration import choose_keep_ratios
from lemo.sparsity.budget import allocate, fraction_for_memory
from lemo.testing import tiny_model

GRID = [0.1, 0.25, 0.4, 0.7, 1.0]


def _random_table(layers, seed):
    rng = random.Random(seed)
    damage, cost = {}, {}
    for i in range(layers):
        # Damage falls as more is kept (noisily); cost is a little above the ratio (whole blocks, forced ones).
        d = sorted((rng.random() for _ in GRID), reverse=True)
        damage[i] = {r: (0.0 if r == 1.0 else v) for r, v in zip(GRID, d)}
        cost[i] = {r: min(1.0, r + rng.choice([0.0, 0.02, 0.05])) for r in GRID}
    return damage, cost


@pytest.mark.parametrize("seed", range(20))
def test_allocation_respects_the_budget_and_is_optimal(seed):
    damage, cost = _random_table(4, seed)
    target = random.Random(seed).uniform(0.2, 0.9)
    chosen = allocate(damage, cost, target)
    spent = sum(cost[i][r] for i, r in chosen.items()) / 4
    assert spent <= target + 1e-12
    best = min(
        sum(damage[i][r] for i, r in enumerate(combo))
        for combo in itertools.product(GRID, repeat=4)
        if sum(cost[i][r] for i, r in enumerate(combo)) / 4 <= target - 4e-3  # beyond the DP's rounding slack
    )
    assert sum(damage[i][r] for i, r in chosen.items()) <= best + 1e-12


def test_impossible_budget_names_the_smallest_target():
    damage, cost = _random_table(3, 0)
    with pytest.raises(ValueError, match=r"below the cheapest possible 0\.1"):
        allocate(damage, cost, 0.05)
    with pytest.raises(ValueError, match=r"target=1\.5"):
        allocate(damage, cost, 1.5)


def test_memory_budget_to_kept_fraction():
    # 10 GiB dense, 6 GiB at 0.5 kept -> 8 GiB per unit of kept fraction -> 8 GiB fits 0.75.
    gib = 2**30
    assert fraction_for_memory(8 * gib, 10 * gib, 6 * gib, 0.5) == pytest.approx(0.75)
    assert fraction_for_memory(20 * gib, 10 * gib, 6 * gib, 0.5) == 1.0
    with pytest.raises(ValueError, match="below what even zero kept tokens"):
        fraction_for_memory(1 * gib, 10 * gib, 6 * gib, 0.5)


def test_budgeted_search_on_a_tiny_model_stays_within_budget_and_writes_a_finetune_config(tmp_path):
    model = tiny_model("qwen3", layers=6)
    g = torch.Generator().manual_seed(0)
    texts = [torch.randint(0, 256, (200,), generator=g) for _ in range(2)]  # 200: partial last block
    sparsity = lemo.SparsityConfig(block_size=16, mlp="tokens")
    res = choose_keep_ratios(model, texts, target=0.5, sparsity=sparsity, seq_len=200, grid=GRID)
    assert res.layers == [2, 3, 4]
    assert res.kept_fraction <= 0.5 and all(r in GRID for r in res.keep_ratio)
    assert res.uniform_damage is not None and res.damage <= res.uniform_damage + 1e-12
    assert res.table["damage"]["2"]["1.0"] == 0.0  # keeping everything is the dense layer exactly
    # Costs (realized kept fractions) rise with the ratio; damage usually falls but need not be monotone.
    for layer in ("2", "3", "4"):
        costs = [res.table["cost"][layer][str(r)] for r in GRID]
        assert costs == sorted(costs)
    d = res.sparsity_dict()
    cfg = lemo.SparsityConfig(**d)
    assert cfg.keep_ratio == res.keep_ratio and cfg.sparse_layers == [2, 3, 4] and cfg.block_size == 16
    assert cfg.mlp == "tokens"  # the search's base settings carry over
    # Into an existing finetune YAML: other keys stay, the sparsity section gets the ratios.
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {"steps": 7, "sparsity": {"scorer": "predictor", "random_fraction": 0.0, "block_size": 64}}
        )
    )
    res.write_yaml(path)
    data = yaml.safe_load(path.read_text())
    assert data["steps"] == 7 and data["sparsity"]["scorer"] == "predictor"
    assert data["sparsity"]["block_size"] == 16  # the ratios were measured with 16-token blocks
    assert data["sparsity"]["keep_ratio"] == res.keep_ratio
    try:
        from lemo.config import FinetuneConfig, load_yaml
    except ImportError:
        return
    ft = load_yaml(path, FinetuneConfig)
    assert ft.sparsity.keep_ratio == res.keep_ratio and ft.steps == 7
