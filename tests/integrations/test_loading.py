"""`check_model_dir`: what a --model directory lacks is named before anything loads, the architecture first."""

import json

import pytest

from lemo.integrations.transformers.loading import check_model_dir


def _config_only(tmp_path, **config):
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_an_unsupported_architecture_without_weights_is_named_as_unsupported(tmp_path):
    # Copying GPT-2's weights in, as a "no weights" message would ask, cannot make it run: say so first.
    gpt2 = _config_only(tmp_path, model_type="gpt2", n_layer=2)
    with pytest.raises(ValueError) as err:
        check_model_dir(gpt2)
    text = str(err.value)
    assert "model type 'gpt2' is not supported by lemo" in text and "llama" in text
    assert "no weights" not in text


def test_a_supported_architecture_without_weights_is_told_to_copy_them(tmp_path):
    llama = _config_only(tmp_path, model_type="llama")
    with pytest.raises(ValueError, match=r"has a config\.json but no weights"):
        check_model_dir(llama)


def test_an_unreadable_config_names_the_fix(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(
        ValueError, match=r"config.json cannot be read as a JSON object .*save the model again"
    ):
        check_model_dir(tmp_path)
