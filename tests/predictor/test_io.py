"""Save/load round trip and refusal of predictors made for another model."""

import json

import pytest
import torch

import lemo
from lemo.config import PredictorConfig
from lemo.integrations.transformers.calibration import load_predictors, model_identity
from lemo.predictor import PredictorSet, load_predictor_set
from lemo.testing import tiny_model

B = 16


def _pset(model, seed=0):
    torch.manual_seed(seed)
    ident = model_identity(model)
    cfg = PredictorConfig(
        d_model=ident.hidden_size, slice_dim=ident.head_dim, block_size=B, hidden=32, mid=64
    )
    return PredictorSet(cfg, lemo.SparsityConfig().resolve_layers(ident.num_layers), ident, meta={"steps": 3})


def _prune_some(pset):
    """Make the towers' widths differ from the config, as elastic pruning does."""
    pset.train().track_deaths(True)
    pset[1](torch.randn(300, 64))
    pset[2](torch.randn(300, 64))
    for layer in pset.layers:
        for tower in (pset[layer].q, pset[layer].k):
            tower.dead1.zero_()
            tower.dead2.zero_()
    for tower in (pset[1].q, pset[2].k):
        tower.dead1[:5] = tower.seen  # these units are "always dead"
        tower.dead2[:7] = tower.seen
    pset.prune(0.9, min_units=4)
    pset.track_deaths(False)
    pset.eval()


def test_save_load_round_trip_keeps_weights_widths_and_identity(tmp_path):
    model = tiny_model("qwen2")
    pset = _pset(model)
    _prune_some(pset)
    assert pset[1].widths["q"] == (27, 57) and pset[1].widths["k"] == (32, 64)
    pset.save(tmp_path)
    doc = json.loads((tmp_path / "predictors.json").read_text())
    assert doc["model"]["model_type"] == "qwen2" and doc["model"]["hidden_size"] == 64
    assert doc["layers"]["1"]["q"] == [27, 57] and doc["meta"] == {"steps": 3}
    loaded = load_predictors(tmp_path, model)
    assert loaded.layers == pset.layers and loaded.widths() == pset.widths()
    assert loaded.identity == pset.identity
    x = torch.randn(100, 64)
    for layer in pset.layers:
        assert torch.equal(loaded[layer](x), pset[layer](x))
    assert set(loaded.state_dict()) == set(pset.state_dict())


def test_bf16_round_trip_and_the_same_model_in_another_dtype_is_accepted(tmp_path):
    model = tiny_model("llama")
    _pset(model).to(torch.bfloat16).save(tmp_path)
    loaded = load_predictors(tmp_path, model.to(torch.bfloat16))
    assert next(loaded.parameters()).dtype == torch.bfloat16


def test_predictors_for_another_model_are_refused(tmp_path):
    _pset(tiny_model("llama")).save(tmp_path)
    other_shape = tiny_model("llama", hidden=32, heads=2, kv_heads=1)
    with pytest.raises(ValueError, match=r"calibrated for .*hidden_size: 64 vs 32.*Run `lemo calibrate`"):
        load_predictors(tmp_path, other_shape)
    other_arch = tiny_model("mistral")
    with pytest.raises(ValueError, match="model_type: 'llama' vs 'mistral'"):
        load_predictors(tmp_path, other_arch)
    same_shape_other_weights = tiny_model("llama", seed=1)
    with pytest.raises(ValueError, match=r"same shape but different weights.*strict=False"):
        load_predictors(tmp_path, same_shape_other_weights)
    # An explicit override for a fine-tuned checkpoint of the calibrated model; shapes are still checked.
    assert load_predictors(tmp_path, same_shape_other_weights, strict=False).layers == [1, 2]
    with pytest.raises(ValueError, match="hidden_size"):
        load_predictors(tmp_path, other_shape, strict=False)


def test_lora_wrapped_model_matches_its_base(tmp_path):
    from peft import LoraConfig, get_peft_model

    model = tiny_model("qwen3")
    _pset(model).save(tmp_path)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert load_predictors(tmp_path, peft_model).identity.model_type == "qwen3"


def test_missing_or_inconsistent_files_name_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="lemo calibrate --output"):
        load_predictor_set(tmp_path)
    model = tiny_model("llama")
    pset = _pset(model)
    pset.save(tmp_path)
    doc = json.loads((tmp_path / "predictors.json").read_text())
    doc["layers"]["1"]["q"] = [5, 5]
    (tmp_path / "predictors.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="come from different runs"):
        load_predictor_set(tmp_path)
    doc["version"] = 99
    (tmp_path / "predictors.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="upgrade lemo"):
        load_predictor_set(tmp_path)
