"""`free_input_leaf` (lemo.integrations.transformers.input_leaf): the embedding output that PEFT's checkpointing
turns into a leaf is no longer held by autograd, and the loss and every adapter gradient stay as they were."""

from __future__ import annotations

import weakref

import pytest
import torch

import lemo
from lemo.integrations.transformers.loading import enable_gradient_checkpointing
from lemo.plan import PlanConfig, predict
from lemo.testing import tiny_model, with_lora

T = 128
OFFLOAD = dict(block_size=16, offload="cpu", tile_tokens=32, tile_attention=True)


def _model(checkpointing: bool = True, reentrant: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    model = with_lora(tiny_model("llama", layers=4)).train()
    if checkpointing and reentrant:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
        model.enable_input_require_grads()
    elif checkpointing:
        enable_gradient_checkpointing(model)  # non-reentrant, with enable_input_require_grads as PEFT does
    return model


def _step(model, ids):
    """Loss, adapter gradients, and whether the embedding output was alive after the forward and after backward."""
    seen = {}
    emb = model.get_base_model().get_input_embeddings()
    handle = emb.register_forward_hook(
        lambda _m, _a, out: seen.__setitem__("out", weakref.ref(out)), prepend=True
    )
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # the random share of the selection: the same draws in every run
    try:
        loss = model(input_ids=ids, labels=ids).loss
        after_forward = seen["out"]() is not None
        loss.backward()
    finally:
        handle.remove()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, after_forward


def _ids():
    return torch.randint(0, 256, (1, T), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("extra", [OFFLOAD, {"block_size": 16, "offload": "cpu"}], ids=["tiled", "untiled"])
def test_under_offload_the_embedding_output_is_freed_and_nothing_else_changes(extra):
    ids = _ids()
    kept = _step(lemo.apply(_model(), lemo.SparsityConfig(**extra, free_input_leaf=False)), ids)
    freed = _step(lemo.apply(_model(), lemo.SparsityConfig(**extra)), ids)
    assert kept[2], "PEFT's checkpointing keeps the embedding output as a leaf (what this fixes)"
    assert not freed[2], "no autograd node holds the embedding output once layer 0 has stored its input"
    assert freed[0] == kept[0]
    assert freed[1].keys() == kept[1].keys()
    for name, g in kept[1].items():
        torch.testing.assert_close(freed[1][name], g, rtol=0, atol=0, msg=name)


def test_hf_reentrant_checkpointing_still_trains_every_adapter():
    """A reentrant checkpoint runs its backward only if an input requires grad: the freed output still does."""
    ids = _ids()
    cfg = dict(block_size=16, sparse_layers="none")  # every layer HF's, checkpointed by HF (reentrant)
    kept = _step(lemo.apply(_model(reentrant=True), lemo.SparsityConfig(**cfg, free_input_leaf=False)), ids)
    freed = _step(lemo.apply(_model(reentrant=True), lemo.SparsityConfig(**cfg)), ids)
    assert freed[0] == kept[0]
    for name, g in kept[1].items():
        assert float(g.abs().sum()) > 0, name
        torch.testing.assert_close(freed[1][name], g, rtol=0, atol=0, msg=name)


def test_checkpointing_turned_on_after_apply_is_handled_and_remove_restores():
    """A Trainer turns checkpointing on when training starts, after `lemo.apply`: the leaf is freed all the same;
    `lemo.remove` takes the hook away (the leaf is back)."""
    model = _model(checkpointing=False)
    lemo.apply(model, lemo.SparsityConfig(**OFFLOAD))
    enable_gradient_checkpointing(model)
    assert not _step(model, _ids())[2]
    lemo.remove(model)
    lemo.apply(model, lemo.SparsityConfig(**OFFLOAD, free_input_leaf=False))
    assert _step(model, _ids())[2]


def test_a_trained_embedding_keeps_its_gradient():
    """An embedding whose weights train gives an output with a grad_fn, not a leaf: it is left alone."""
    model = _model()
    emb = model.get_base_model().get_input_embeddings()
    emb.weight.requires_grad_(True)
    lemo.apply(model, lemo.SparsityConfig(**OFFLOAD))
    _, grads, _ = _step(model, _ids())
    (name,) = [n for n in grads if n.endswith("embed_tokens.weight")]
    assert float(grads[name].abs().sum()) > 0


def test_the_plan_counts_the_leaf_only_where_offload_keeps_it_apart():
    base = dict(shape="llama3-8b", seq_len=131072, gradient_checkpointing=True, sparse=True)
    hidden = 4096 * 2 * 131072 / 2**30  # one bf16 hidden state at 128K: 1 GiB
    leaf = "embedding output (a leaf that requires grad)"
    kept = predict(PlanConfig(**base, sparsity=lemo.SparsityConfig(offload="cpu", free_input_leaf=False)))
    freed = predict(PlanConfig(**base, sparsity=lemo.SparsityConfig(offload="cpu")))
    assert kept.breakdown_gib[leaf] == pytest.approx(hidden)
    assert leaf not in freed.breakdown_gib
    assert kept.gpu_peak_gib - freed.gpu_peak_gib == pytest.approx(hidden, rel=1e-6)
    # without offload the leaf is the first layer's stored input, counted there
    on_gpu = predict(
        PlanConfig(**{**base, "seq_len": 8192}, sparsity=lemo.SparsityConfig(free_input_leaf=False))
    )
    assert leaf not in on_gpu.breakdown_gib
