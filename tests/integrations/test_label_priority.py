"""Supervision kept: with label_priority, every labelled position keeps its loss and an exact gradient.

The reference is independent of lemo's sparse layer: HF's own decoder layers, run on the gathered kept rows at
their original positions (so among themselves), with every other row passing the sparse layers unchanged.
"""

import pytest
import torch
import torch.nn.functional as F

import lemo
from lemo.testing import assert_close, tiny_model
from lemo.testing import with_lora as lora

T, BS = 256, 16


def prompt_completion_labels(ids: torch.Tensor, completion: slice) -> torch.Tensor:
    labels = torch.full_like(ids, -100)
    labels[:, completion] = ids[:, completion]
    return labels


def reference_loss(model, ids, labels, kept_blocks, sparse_layers):
    """Loss at the labelled positions, layer by layer with HF modules (mlp="tokens", shared selection)."""
    base = model.get_base_model()
    inner = base.model
    kept = torch.cat([torch.arange(b * BS, min((b + 1) * BS, T)) for b in kept_blocks])  # [N]
    pos = torch.arange(T)[None]  # [1, T]
    h = inner.embed_tokens(ids)  # [1, T, d]
    full = inner.rotary_emb(h, pos)
    sub = inner.rotary_emb(h, kept[None])  # RoPE at the kept tokens' original positions
    for i, layer in enumerate(inner.layers):
        if i in sparse_layers:
            hk = layer(h[:, kept], attention_mask=None, position_ids=kept[None], position_embeddings=sub)
            hk = hk[0] if isinstance(hk, tuple) else hk
            h = h.index_copy(1, kept, hk)  # eliminated rows skip the layer
        else:
            out = layer(h, attention_mask=None, position_ids=pos, position_embeddings=full)
            h = out[0] if isinstance(out, tuple) else out
    logits = base.lm_head(inner.norm(h)).float()  # [1, T, V]
    shift = labels[:, 1:]
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), shift.reshape(-1), ignore_index=-100)


@pytest.mark.parametrize("random_fraction", [0.0, 1.0])
def test_labelled_positions_keep_loss_and_gradients_against_hf_layers(random_fraction):
    model = lora(tiny_model("llama", layers=4)).train()
    ids = torch.randint(0, 256, (1, T))
    labels = prompt_completion_labels(ids, slice(200, 230))  # a completion in blocks 12..14
    cfg = lemo.SparsityConfig(
        keep_ratio=0.4,
        block_size=BS,
        mlp="tokens",
        shared_selection=True,
        loss_tokens="kept",
        label_priority=True,
        random_fraction=random_fraction,
    )
    lemo.apply(model, cfg)
    model.zero_grad(set_to_none=True)
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    stats = lemo.stats(model)
    (blocks,) = stats[1]["blocks"]
    assert len(blocks) == -(-4 * (T // BS) // 10)  # the budget holds
    assert {12, 13, 14} <= set(blocks)  # position 199 predicts label 200: blocks 12..14 carry labels
    assert all(s["blocks"] == [blocks] for s in stats.values())

    lemo.remove(model)
    model.zero_grad(set_to_none=True)
    expected = reference_loss(model, ids, labels, blocks, sparse_layers=sorted(stats))
    expected.backward()
    assert_close(loss, expected, name="loss at labelled positions")
    for name, g in grads.items():
        assert_close(g, model.get_parameter(name).grad, rtol=1e-3, atol=1e-6, name=name)


def test_without_label_priority_the_oracle_may_drop_the_completion():
    # The failure this option fixes, on a tiny model: the top-scored blocks need not cover the labels.
    model = tiny_model("llama", layers=4).train()
    torch.manual_seed(1)
    ids = torch.randint(0, 256, (1, T))
    labels = prompt_completion_labels(ids, slice(200, 230))
    dropped = 0
    for prio in (False, True):
        cfg = lemo.SparsityConfig(keep_ratio=0.3, block_size=BS, shared_selection=True, label_priority=prio)
        lemo.apply(model, cfg)
        model(input_ids=ids, labels=labels)
        (blocks,) = lemo.stats(model)[1]["blocks"]
        missing = {12, 13, 14} - set(blocks)
        if prio:
            assert not missing
        else:
            dropped = len(missing)
    assert dropped > 0


def test_label_priority_without_the_segmented_loss_still_sees_the_labels():
    model = tiny_model("llama", layers=4).train()
    ids = torch.randint(0, 256, (1, T))
    labels = prompt_completion_labels(ids, slice(100, 120))
    cfg = lemo.SparsityConfig(
        keep_ratio=0.2, block_size=BS, label_priority=True, segmented_loss=False, loss_tokens="all"
    )
    lemo.apply(model, cfg)
    assert torch.isfinite(model(input_ids=ids, labels=labels).loss)
    (blocks,) = lemo.stats(model)[1]["blocks"]
    assert {6, 7} <= set(blocks)
    lemo.remove(model)
    assert "forward" not in model.__dict__
