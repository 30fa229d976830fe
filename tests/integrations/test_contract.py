"""The public contract on tiny random models of every supported architecture (docs/design.md sections 1 and 3)."""

import pytest
import torch

import lemo
from lemo.testing import ARCHS, assert_close, loss_and_grads, tiny_model
from lemo.testing import with_lora as lora

T = 200  # not a multiple of the block size: the last block is partial


@pytest.mark.parametrize("arch", ARCHS)
def test_all_kept_equals_dense(arch):
    model = lora(tiny_model(arch)).train()
    ids = torch.randint(0, 256, (1, T))
    dense_logits = model(input_ids=ids).logits.detach()
    dense_loss, dense_grads = loss_and_grads(model, ids)
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=1.0, sparse_layers="all", block_size=16))
    sparse_logits = model(input_ids=ids).logits.detach()
    sparse_loss, sparse_grads = loss_and_grads(model, ids)
    assert lemo.stats(model)[0]["kept_fraction"] == 1.0
    assert_close(sparse_logits, dense_logits, name="logits")
    assert_close(sparse_loss, dense_loss, name="loss")
    assert dense_grads.keys() == sparse_grads.keys() and len(dense_grads) == 4 * 4 * 2
    for name in dense_grads:
        assert_close(sparse_grads[name], dense_grads[name], rtol=1e-3, atol=1e-6, name=name)


@pytest.mark.parametrize("arch", ARCHS)
def test_elimination_changes_the_loss_and_records_stats(arch):
    model = tiny_model(arch).train()
    ids = torch.randint(0, 256, (1, T))
    dense = model(input_ids=ids, labels=ids).loss
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=0.4, block_size=16))
    sparse = model(input_ids=ids, labels=ids).loss
    stats = lemo.stats(model)
    assert sorted(stats) == [1, 2]  # "auto" on 4 layers: L//2-1 .. L-2
    nb = -(-T // 16)
    for s in stats.values():
        (blocks,) = s["blocks"]
        assert len(blocks) == -(-4 * nb // 10) and blocks == sorted(blocks)
        assert 0 in blocks and nb - 1 in blocks  # sink and local blocks
    assert not torch.isclose(sparse, dense)


@pytest.mark.parametrize("arch", ARCHS)
def test_remove_restores_bit_identical_outputs(arch):
    model = lora(tiny_model(arch)).train()
    ids = torch.randint(0, 256, (2, T))
    before = model(input_ids=ids, labels=ids)
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=0.3, block_size=16, sparse_layers="all"))
    model(input_ids=ids, labels=ids).loss.backward()
    lemo.remove(model)
    after = model(input_ids=ids, labels=ids)
    assert torch.equal(before.logits, after.logits) and torch.equal(before.loss, after.loss)
    assert not any("forward" in m.__dict__ for m in model.modules())
    lemo.remove(model)  # a second remove is a no-op


@pytest.mark.parametrize("arch", ARCHS)
def test_apply_twice_equals_once(arch):
    model = tiny_model(arch).train()
    ids = torch.randint(0, 256, (1, T))
    cfg = lemo.SparsityConfig(keep_ratio=0.5, block_size=16, random_fraction=0.0)
    lemo.apply(model, cfg)
    once = model(input_ids=ids, labels=ids).loss
    layer_forward = model.model.layers[1].forward
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=0.5, block_size=16, random_fraction=0.0))
    assert model.model.layers[1].forward is layer_forward  # same config: nothing re-patched
    assert torch.equal(model(input_ids=ids, labels=ids).loss, once)
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=1.0, block_size=16))  # a new config replaces the old
    lemo.remove(model)
    assert not any("forward" in m.__dict__ for m in model.modules())


@pytest.mark.parametrize(
    "arch,mlp,random_fraction",
    [("llama", "dense", 0.0), ("llama", "tokens", 0.0), *((a, "tokens", 1.0) for a in ARCHS)],
)
def test_gradient_checkpointing_on_and_off_agree(arch, mlp, random_fraction):
    model = lora(tiny_model(arch)).train()
    ids = torch.randint(0, 256, (1, T))
    cfg = lemo.SparsityConfig(keep_ratio=0.4, block_size=16, mlp=mlp, random_fraction=random_fraction)
    lemo.apply(model, cfg)
    torch.manual_seed(5)  # random blocks come from torch's generator: the same seed, the same blocks
    loss_off, grads_off = loss_and_grads(model, ids)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    torch.manual_seed(5)  # and the recompute in backward reuses the forward's draw instead of drawing again
    loss_on, grads_on = loss_and_grads(model, ids)
    assert_close(loss_on, loss_off, name="loss")
    for name in grads_off:
        assert_close(grads_on[name], grads_off[name], rtol=1e-4, atol=1e-7, name=name)


@pytest.mark.parametrize("arch", ARCHS)
def test_padded_batch_equals_per_sample_runs(arch):
    model = tiny_model(arch).train()
    lengths = [T, 130]
    lemo.apply(model, lemo.SparsityConfig.paper(block_size=16, sparse_layers="all", segmented_loss=False))
    ids = torch.randint(0, 256, (2, T))
    mask = torch.ones(2, T, dtype=torch.long)
    mask[1, lengths[1] :] = 0  # right padding
    batch_logits = model(input_ids=ids, attention_mask=mask).logits
    batch_blocks = {layer: s["blocks"] for layer, s in lemo.stats(model).items()}
    for row, n in enumerate(lengths):
        single = model(input_ids=ids[row : row + 1, :n]).logits
        assert_close(batch_logits[row, :n], single[0], name=f"row {row}")
        for layer, s in lemo.stats(model).items():
            assert s["blocks"] == [batch_blocks[layer][row]]


@pytest.mark.parametrize("arch", ARCHS)
def test_packed_documents_equal_separate_runs(arch):
    model = tiny_model(arch).train()
    lemo.apply(model, lemo.SparsityConfig.paper(block_size=16, sparse_layers="all", segmented_loss=False))
    docs = [torch.randint(0, 256, (n,)) for n in (90, 47, 63)]
    ids = torch.cat(docs)[None]
    pos = torch.cat([torch.arange(len(d)) for d in docs])[None]
    packed = model(input_ids=ids, position_ids=pos).logits[0]
    start = 0
    for d in docs:
        alone = model(input_ids=d[None]).logits[0]
        assert_close(packed[start : start + len(d)], alone, name=f"doc at {start}")
        start += len(d)


@pytest.mark.parametrize("arch", ARCHS)
def test_segmented_loss_equals_hf_loss_with_padding_labels(arch):
    model = tiny_model(arch).train()
    ids = torch.randint(0, 256, (2, T))
    labels = ids.clone()
    labels[:, :50] = -100
    dense = model(input_ids=ids, labels=labels).loss
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=1.0, block_size=16, loss_chunk=37))
    out = model(input_ids=ids, labels=labels)
    assert out.logits is None
    assert_close(out.loss, dense, name="segmented loss")


@pytest.mark.parametrize("arch", ARCHS)
def test_eval_mode_is_dense_unless_asked(arch):
    model = tiny_model(arch)
    ids = torch.randint(0, 256, (1, T))
    dense = model.eval()(input_ids=ids).logits
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=0.3, block_size=16))
    assert torch.equal(model(input_ids=ids).logits, dense)
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=0.3, block_size=16, sparse_in_eval=True))
    assert not torch.allclose(model(input_ids=ids, use_cache=False).logits, dense)


@pytest.mark.parametrize("arch", ARCHS)
def test_generation_still_works_after_apply(arch):
    model = tiny_model(arch).eval()
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=0.3, block_size=16))
    out = model.generate(torch.randint(0, 256, (1, 40)), max_new_tokens=5, do_sample=False)
    assert out.shape == (1, 45)


def test_unsupported_architecture_is_refused():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(
        ValueError, match="not supported by lemo yet; supported: llama, mistral, qwen2, qwen3"
    ):
        lemo.apply(model, lemo.SparsityConfig())


def test_predictor_scorer_without_predictors_names_the_fix():
    with pytest.raises(ValueError, match="lemo calibrate"):
        lemo.apply(tiny_model("llama"), lemo.SparsityConfig(scorer="predictor", random_fraction=0.0))


@pytest.mark.parametrize("arch", ARCHS)
def test_loss_on_kept_tokens_scores_only_positions_the_last_sparse_layer_kept(arch):
    model = tiny_model(arch).train()
    ids = torch.randint(0, 256, (1, T))
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=0.4, block_size=16, loss_tokens="kept"))
    loss = model(input_ids=ids, labels=ids).loss
    (blocks,) = lemo.stats(model)[2]["blocks"]  # layer 2 is the last sparse layer of 4 ("auto")
    kept = torch.zeros(T, dtype=torch.bool)
    for b in blocks:
        kept[b * 16 : (b + 1) * 16] = True
    labels = ids.clone()
    labels[0, 1:][~kept[:-1]] = -100  # position t predicts token t+1
    labels[0, 0] = -100
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=0.4, block_size=16))
    expected = model(input_ids=ids, labels=labels).loss
    assert lemo.stats(model)[2]["blocks"] == [blocks]
    assert_close(loss, expected, name="kept-token loss")


@pytest.mark.parametrize(("arch", "checkpointing"), [("llama", False), *((a, True) for a in ARCHS)])
def test_shared_selection_keeps_the_same_blocks_in_every_sparse_layer(arch, checkpointing):
    model = lora(tiny_model(arch, layers=6)).train()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    ids = torch.randint(0, 256, (1, T))
    cfg = lemo.SparsityConfig.paper(block_size=16, sparse_layers="all", shared_selection=True)
    lemo.apply(model, cfg)
    _, grads = loss_and_grads(model, ids)
    blocks = [s["blocks"] for s in lemo.stats(model).values()]
    assert len(blocks) == 6 and all(b == blocks[0] for b in blocks)
    assert all(torch.isfinite(g).all() for g in grads.values())
    lemo.apply(model, lemo.SparsityConfig.paper(block_size=16, sparse_layers="all"))
    model(input_ids=ids, labels=ids)
    per_layer = [s["blocks"] for s in lemo.stats(model).values()]
    assert per_layer[0] == blocks[0]  # the first layer chooses the same way in both modes


def test_upper_layers_include_the_last_layer_and_train_it():
    # sparse_layers="upper": the artifact's set plus the last layer (a lower GPU peak; docs/design.md)
    model = lora(tiny_model("llama")).train()
    ids = torch.randint(0, 256, (1, T))
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=0.4, sparse_layers="upper", block_size=16))
    loss, grads = loss_and_grads(model, ids)
    assert sorted(lemo.stats(model)) == [1, 2, 3]  # 4 layers: L//2-1 .. L-1
    assert torch.isfinite(loss)
    last = [g for name, g in grads.items() if ".layers.3." in name]
    assert last and all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in last)
