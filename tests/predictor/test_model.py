"""BlockPredictor / PredictorSet shapes on every architecture (GQA, odd head sizes) and use as a scorer."""

import pytest
import torch

import lemo
from lemo.config import PredictorConfig
from lemo.integrations.transformers.calibration import HFCalibrationModel, model_identity
from lemo.predictor import BlockPredictor, PredictorSet
from lemo.testing import ARCHS, tiny_model

T = 200  # not a multiple of the block size: the last block is partial
B = 16


def _pset(model, block_size=B, **kw):
    ident = model_identity(model)
    cfg = PredictorConfig(d_model=ident.hidden_size, slice_dim=ident.head_dim, block_size=block_size, **kw)
    layers = lemo.SparsityConfig().resolve_layers(ident.num_layers)
    return PredictorSet(cfg, layers, ident)


@pytest.mark.parametrize("arch", ARCHS)
def test_predictor_shapes_on_every_architecture_with_gqa(arch):
    model = tiny_model(arch, heads=4, kv_heads=2)  # GQA: two query heads per key/value head
    pset = _pset(model)
    xs = HFCalibrationModel(model).normed_inputs(torch.randint(0, 256, (T,)), pset.layers)
    nb = -(-T // B)
    for layer in pset.layers:
        x = xs[layer]
        assert x.shape == (T, 64)
        score_map = pset[layer](x)
        assert score_map.shape == (nb, nb) and score_map.dtype == torch.float32
        assert torch.equal(score_map, score_map.tril())  # causal: no query block sees a later key block
        e = pset[layer].block_embeddings(x)
        assert e.shape == (4, nb, B * 16)  # 4 head-sized slices of 16, one vector of b*16 per block
        assert pset[layer].scores(x).shape == (nb,)


def test_head_size_that_does_not_divide_the_hidden_size():
    # Qwen3 decouples head_dim from hidden/heads (e.g. Qwen3-0.6B: hidden 1024, 16 heads of 128).
    model = tiny_model("qwen3", layers=4, hidden=64, heads=4, kv_heads=1, head_dim=24, max_positions=1024)
    ident = model_identity(model)
    assert (ident.head_dim, ident.num_kv_heads) == (24, 1)
    pset = _pset(model)
    assert pset.config.n_slices == 3  # ceil(64 / 24): the last slice is zero-padded
    x = HFCalibrationModel(model).normed_inputs(torch.randint(0, 256, (T,)), [1])[1]
    assert pset[1](x).shape == (13, 13)
    assert pset[1].block_embeddings(x)[-1, :, :].reshape(13, B, 24)[:, :, 16:].abs().sum() == 0


def test_default_shape_is_the_artifacts_and_sizes_are_configurable():
    cfg = PredictorConfig(d_model=4096, slice_dim=128)
    assert (cfg.in_dim, cfg.hidden, cfg.mid_dim, cfg.out) == (8192, 128, 8192, 128)
    # 2 towers x (8192*128 + 128*8192 + 8192*128): the artifact's 6.29M parameters per layer.
    n = sum(p.numel() for p in BlockPredictor(cfg).parameters())
    assert n == 2 * (8192 * 128 * 3) == 6_291_456
    small = BlockPredictor(
        PredictorConfig(d_model=64, slice_dim=16, block_size=16, hidden=8, mid=32, out_dim=4)
    )
    assert small.widths == {"q": (8, 32), "k": (8, 32)}
    assert small(torch.randn(40, 64)).shape == (3, 3)
    with pytest.raises(ValueError, match="hidden=0 must be a positive integer"):
        PredictorConfig(d_model=64, slice_dim=16, hidden=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_max_pool_variant_shapes_and_padding_is_exact(arch):
    model = tiny_model(arch, heads=4, kv_heads=1)
    pset = _pset(model, pool="max", hidden=16)
    assert pset.config.in_dim == 64 and pset.config.mid_dim == 32 and pset.config.tower_out == 4 * 16
    x = HFCalibrationModel(model).normed_inputs(torch.randint(0, 256, (T,)), [1])[1]
    nb = -(-T // B)
    m = pset[1](x)
    assert m.shape == (nb, nb) and torch.equal(m, m.tril())
    # Zero-padded rows of the partial last block never change the block's max-pooled features.
    padded = torch.cat([x, torch.zeros(nb * B - T, 64)])
    assert torch.allclose(pset[1](padded), m)
    # Within a block the token order does not matter (the oracle's off-diagonal entries do not care either).
    perm = torch.cat([torch.randperm(B) + i * B for i in range(nb - 1)] + [torch.arange((nb - 1) * B, T)])
    assert torch.allclose(pset[1](x[perm]), m, rtol=1e-5, atol=1e-6)


def test_max_pool_padding_is_masked_even_with_biases():
    torch.manual_seed(0)
    pred = BlockPredictor(PredictorConfig(d_model=64, slice_dim=16, block_size=B, pool="max", bias=True))
    for p in pred.parameters():
        torch.nn.init.normal_(p, std=0.5)  # large biases: an unmasked zero token would win the max
    x = torch.randn(T, 64)
    # Completing the partial last block with copies of one of its tokens leaves every block max unchanged.
    completed = torch.cat([x, x[-1:].expand(13 * B - T, 64)])
    assert torch.allclose(pred(x), pred(completed), rtol=1e-5, atol=1e-5)


def test_short_and_single_block_segments():
    pred = BlockPredictor(PredictorConfig(d_model=64, slice_dim=16, block_size=B))
    assert pred(torch.randn(1, 64)).shape == (1, 1)
    assert pred(torch.randn(B, 64)).shape == (1, 1)
    assert pred(torch.randn(B + 1, 64)).shape == (2, 2)


def test_wrong_width_names_the_fix():
    pred = BlockPredictor(PredictorConfig(d_model=64, slice_dim=16, block_size=B))
    with pytest.raises(ValueError, match="lemo calibrate"):
        pred(torch.randn(20, 32))


def test_predictor_set_drives_lemo_apply_and_reports_time():
    model = tiny_model("llama").train()
    pset = _pset(model)
    ids = torch.randint(0, 256, (1, T))
    lemo.apply(
        model,
        lemo.SparsityConfig(
            block_size=B, keep_ratio=0.4, scorer="predictor", random_fraction=0.0, shared_selection=False
        ),
        predictors=pset,
    )
    model(input_ids=ids, labels=ids).loss.backward()
    stats = lemo.stats(model)
    assert sorted(stats) == pset.layers
    nb = -(-T // B)
    for s in stats.values():
        assert len(s["blocks"][0]) == -(-4 * nb // 10)
    # The scorer lemo.apply used is the set's own, so its time can be logged after training steps.
    assert pset.as_scorer() is pset.as_scorer()
    t = pset.timings()
    assert t["calls"] == 2 and t["seconds"] > 0 and t["param_bytes"] == pset.nbytes()
    pset.reset_timings()
    pset.as_scorer()(HFCalibrationModel(model).layer_parts(1), torch.randn(T, 64), B)
    assert pset.timings()["calls"] == 1
    assert 0 < pset.activation_bytes(T) < 10 * 2**20
    lemo.remove(model)


def test_scorer_refuses_other_block_sizes_and_layers():
    model = tiny_model("llama")
    pset = _pset(model)
    scorer = pset.as_scorer()
    cm = HFCalibrationModel(model)
    with pytest.raises(ValueError, match="block_size=16"):
        scorer(cm.layer_parts(1), torch.randn(T, 64), 64)
    with pytest.raises(KeyError, match=r"sparse_layers=\[1, 2\]"):
        scorer(cm.layer_parts(0), torch.randn(T, 64), B)
