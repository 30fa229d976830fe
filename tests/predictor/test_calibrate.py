"""Calibration on a tiny model: the loss goes down, pruning keeps training consistent, the report is complete."""

import ast
import importlib
import json
from pathlib import Path

import pytest
import torch

import lemo
from lemo import calibrate, load_predictors
from lemo.config import PredictorConfig, PredictorTrainingConfig
from lemo.integrations.transformers.calibration import token_chunks
from lemo.predictor import PredictorSet
from lemo.predictor.calibrate import _make_optimizer, _prune_and_rebuild
from lemo.testing import tiny_model

B = 16
SPARSITY = lemo.SparsityConfig(block_size=B, keep_ratio=0.4)


def _chunks(n, length=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (length,), generator=g) for _ in range(n)]


def test_calibration_lowers_the_loss_and_reports(tmp_path):
    model = tiny_model("llama")
    cfg = PredictorTrainingConfig(
        seq_len=256, steps=40, lr=3e-3, warmup_steps=4, prune_every=10, progress=False
    )
    pset = calibrate(
        model, _chunks(4), sparsity=SPARSITY, config=cfg, holdout=_chunks(1, seed=1), output_dir=tmp_path
    )
    rep = pset.report
    first, last = sum(rep.loss_curve[:5]) / 5, sum(rep.loss_curve[-5:]) / 5
    assert last < 0.5 * first, f"loss {first:.4f} -> {last:.4f}"
    assert len(rep.loss_curve) == 40 and rep.layers == [1, 2] and rep.recall_on == "held-out"
    assert set(rep.recall) == {1, 2} and all(0.0 <= r <= 1.0 for r in rep.recall.values())
    assert rep.params_final <= rep.params_initial and rep.param_bytes == pset.nbytes()
    assert [e["step"] for e in rep.prune_events] == [10, 20, 30]  # prune_until 0.8 of 40 steps
    assert {"collect", "train", "eval", "total"} <= set(rep.time_s)
    saved = json.loads((tmp_path / "calibration.json").read_text())
    assert saved["recall"].keys() == {"1", "2"} and saved["steps"] == 40
    assert (tmp_path / "block_maps.png").stat().st_size > 0 and (tmp_path / "loss.png").stat().st_size > 0
    assert not any(p.requires_grad is False for p in model.parameters())  # the model's flags are restored
    loaded = load_predictors(tmp_path, model)
    assert loaded.widths() == pset.widths()


def test_calibrated_predictors_run_inside_lemo_apply():
    model = tiny_model("mistral")
    cfg = PredictorTrainingConfig(seq_len=128, steps=3, prune_every=0, progress=False)
    pset = calibrate(model, _chunks(2, 128), sparsity=SPARSITY, config=cfg)
    assert pset.report.recall_on == "training"
    ids = torch.randint(0, 256, (1, 150))
    lemo.apply(
        model.train(),
        lemo.SparsityConfig(block_size=B, scorer="predictor", random_fraction=0.0),
        predictors=pset,
    )
    model(input_ids=ids, labels=ids).loss.backward()
    assert sorted(lemo.stats(model)) == [1, 2]


def test_disk_cache_reuses_collected_samples(tmp_path, monkeypatch):
    model = tiny_model("qwen2")
    cfg = PredictorTrainingConfig(
        seq_len=128, steps=2, prune_every=0, progress=False, pool="max", cache_dir=str(tmp_path)
    )
    first = calibrate(model, _chunks(2, 128), sparsity=SPARSITY, config=cfg)
    assert len(list(tmp_path.glob("sample-*.pt"))) == 2
    assert first.config.pool == "max"
    samples = importlib.import_module("lemo.predictor.samples")  # where the frozen forward is run

    def no_forward(*args, **kwargs):
        raise AssertionError("the frozen model ran although every sample was cached")

    monkeypatch.setattr(samples, "_collect", no_forward)
    again = calibrate(model, _chunks(2, 128), sparsity=SPARSITY, config=cfg)
    assert again.report.loss_curve == first.report.loss_curve  # same samples, same seed: same run


def test_pruning_carries_optimizer_state_to_the_surviving_units():
    cfg = PredictorTrainingConfig(min_units=2)
    pset = PredictorSet(PredictorConfig(d_model=32, slice_dim=8, block_size=4, hidden=6, mid=10), [0])
    opt = _make_optimizer(pset, cfg)
    pset.train().track_deaths(True)
    pset[0](torch.randn(40, 32)).sum().backward()
    opt.step()
    tower = pset[0].q
    tower.dead1.zero_()
    tower.dead2.zero_()
    tower.dead1[[1, 4]] = tower.seen  # units 1 and 4 of the first width always dead
    tower.dead2[[0]] = tower.seen
    for t in (pset[0].k,):
        t.dead1.zero_()
        t.dead2.zero_()
    w1 = tower.l1.weight.detach().clone()
    m1 = opt.state[tower.l1.weight]["exp_avg"].clone()
    opt, removed = _prune_and_rebuild(pset, opt, 0.9, cfg)
    assert pset[0].widths == {"q": (4, 9), "k": (6, 10)}
    assert removed == 2 * 32 + 2 * 10 + 1 * 4 + 1 * 8  # l1 rows, l2 columns, l2 row, l3 column
    keep = torch.tensor([0, 2, 3, 5])
    assert torch.equal(tower.l1.weight, w1[keep])
    assert torch.equal(opt.state[tower.l1.weight]["exp_avg"], m1[keep])
    for p in pset.parameters():
        for v in opt.state[p].values():
            assert not torch.is_tensor(v) or v.dim() == 0 or v.shape == p.shape
    pset[0](torch.randn(40, 32)).sum().backward()
    opt.step()  # shapes agree: AdamW steps on


def test_token_chunks_cut_texts_without_crossing_them():
    chunks = token_chunks([list(range(300)), list(range(100)), list(range(10))], None, 128)
    assert [c.numel() for c in chunks] == [
        128,
        128,
        100,
    ]  # tails dropped; a short text is one chunk; <64 skipped
    assert chunks[2][0] == 0


def test_bad_settings_name_the_flag():
    with pytest.raises(ValueError, match="--steps 0"):
        PredictorTrainingConfig(steps=0)
    with pytest.raises(ValueError, match="--schedule"):
        PredictorTrainingConfig(schedule="linear")
    with pytest.raises(ValueError, match="pass more text"):
        calibrate(
            tiny_model("llama"),
            [list(range(10))],
            sparsity=SPARSITY,
            config=PredictorTrainingConfig(seq_len=128),
        )


def test_calibration_has_one_entry_point():
    # `lemo.calibrate` (and `lemo.load_predictors`) is the only function of its name; the loop underneath it is
    # `lemo.predictor.train_predictors`, so a reader never has to ask which `calibrate` a call means.
    root = Path(lemo.__file__).parent
    defs = {"calibrate": [], "load_predictors": []}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name in defs:
                defs[node.name].append(str(path.relative_to(root)))
    where = "integrations/transformers/calibration.py"
    assert defs == {"calibrate": [where], "load_predictors": [where]}
    assert lemo.calibrate.__module__ == "lemo.integrations.transformers.calibration"
