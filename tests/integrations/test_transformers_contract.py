"""`apply` checks what it relies on in an HF decoder layer and refuses a changed layout with a clear message."""

import pytest
import torch

import lemo
from lemo.integrations.transformers.contract import UnsupportedTransformers
from lemo.testing import ARCHS, tiny_model


@pytest.mark.parametrize("arch", ARCHS)
def test_the_installed_transformers_meets_the_contract(arch):
    lemo.apply(tiny_model(arch), lemo.SparsityConfig(block_size=16))  # no refusal on the tested versions


def _swap_forward(model, forward):
    """Give every decoder layer a subclass with another forward (what a transformers release could do)."""
    for layer in model.model.layers:
        layer.__class__ = type("ChangedDecoderLayer", (type(layer),), {"forward": forward})


def test_a_layer_without_position_embeddings_is_refused():
    model = tiny_model("llama")

    def forward(self, hidden_states, attention_mask=None, position_ids=None, **kwargs):
        return hidden_states

    _swap_forward(model, forward)
    with pytest.raises(UnsupportedTransformers, match=r"position_embeddings.*transformers>=5\.17"):
        lemo.apply(model, lemo.SparsityConfig(block_size=16))


def test_a_layer_that_returns_a_tuple_is_refused():
    model = tiny_model("llama")

    def forward(
        self, hidden_states, attention_mask=None, position_ids=None, position_embeddings=None, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return hidden_states, hidden_states

    _swap_forward(model, forward)
    with pytest.raises(UnsupportedTransformers, match="returns a tuple"):
        lemo.apply(model, lemo.SparsityConfig(block_size=16))


def test_a_renamed_module_is_refused():
    model = tiny_model("qwen3")
    for layer in model.model.layers:
        layer.self_attn.query_norm = layer.self_attn.q_norm
        del layer.self_attn.q_norm
    with pytest.raises(UnsupportedTransformers, match="no module 'q_norm'"):
        lemo.apply(model, lemo.SparsityConfig(block_size=16))


def test_projection_shapes_must_match_the_config():
    model = tiny_model("llama", heads=4, kv_heads=2)
    model.config.num_key_value_heads = 4  # the config now implies wider k projections than the modules have
    with pytest.raises(UnsupportedTransformers, match="k_proj has 32 outputs, the config implies 64"):
        lemo.apply(model, lemo.SparsityConfig(block_size=16))
