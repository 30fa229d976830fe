"""In-place residual update and sparsity-aware checkpointing: same numbers, less stored."""

import pytest
import torch

import lemo
import lemo.sparsity.layer as sparse_layer
from lemo.testing import assert_close, loss_and_grads, tiny_model
from lemo.testing import with_lora as lora

T = 200  # a partial last block


def _gc_on(model, reentrant: bool = False):
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
    model.enable_input_require_grads()


@pytest.mark.parametrize("checkpointing", [False, True])
def test_inplace_update_gives_the_same_loss_and_gradients(checkpointing):
    model = lora(tiny_model("llama")).train()
    if checkpointing:
        _gc_on(model)
    ids = torch.randint(0, 256, (1, T))
    base = dict(keep_ratio=0.4, block_size=16, mlp="tokens", sparse_layers=[1, 2, 3])
    lemo.apply(model, lemo.SparsityConfig(**base, inplace_residual=False))
    torch.manual_seed(3)  # the default draws random blocks: the same seed gives both runs the same blocks
    loss_copy, grads_copy = loss_and_grads(model, ids)
    lemo.apply(model, lemo.SparsityConfig(**base, inplace_residual=True))
    torch.manual_seed(3)
    loss_inplace, grads_inplace = loss_and_grads(model, ids)
    assert_close(loss_inplace, loss_copy, name="loss")
    for name in grads_copy:
        assert_close(grads_inplace[name], grads_copy[name], rtol=1e-5, atol=1e-7, name=name)


@pytest.mark.parametrize("inplace", [True, False])
def test_the_residual_is_updated_in_place_only_when_asked(inplace):
    model = tiny_model("llama").train()
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=0.4, block_size=16, mlp="tokens", sparse_layers=[1],
                                          inplace_residual=inplace))  # fmt: skip
    seen = {}
    layer = model.model.layers[1]
    layer.register_forward_hook(lambda m, a, out: seen.update(inp=a[0], out=out))
    model(input_ids=torch.randint(0, 256, (1, T)))
    # In place, the layer's output is its input buffer: no [T, d] copy was made.
    assert (seen["out"].data_ptr() == seen["inp"].data_ptr()) is inplace


def test_output_hidden_states_are_not_overwritten_by_later_layers():
    model = tiny_model("llama").train()
    ids = torch.randint(0, 256, (1, T))
    cfg = dict(keep_ratio=0.4, block_size=16, mlp="tokens", sparse_layers=[1, 2, 3])
    lemo.apply(model, lemo.SparsityConfig(**cfg, inplace_residual=False))
    torch.manual_seed(0)
    expected = model(input_ids=ids, output_hidden_states=True).hidden_states
    lemo.apply(model, lemo.SparsityConfig(**cfg, inplace_residual=True))
    torch.manual_seed(0)  # the same random blocks as the first run
    got = model(input_ids=ids, output_hidden_states=True).hidden_states
    for i, (g, e) in enumerate(zip(got, expected)):
        assert torch.equal(g, e), f"hidden state {i} was modified after it was recorded"


@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpointed_sparse_layers_store_only_their_kept_rows(monkeypatch, reentrant):
    model = lora(tiny_model("llama")).train()
    _gc_on(model, reentrant)
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=0.4, block_size=16, mlp="tokens", sparse_layers=[1, 2]))
    stored = []
    real = sparse_layer.torch_checkpoint

    def spy(fn, *args, **kw):
        stored.append(next(tuple(a.shape) for a in args if isinstance(a, torch.Tensor) and a.dim() == 2))
        return real(fn, *args, **kw)

    monkeypatch.setattr(sparse_layer, "torch_checkpoint", spy)
    hf_calls = []
    for i in (
        1,
        2,
    ):  # HF's checkpoint must not also run around a sparse layer (it would store the whole input)
        layer = model.base_model.model.model.layers[i]
        real_hf = layer._gradient_checkpointing_func
        layer._gradient_checkpointing_func = lambda *a, _f=real_hf, **k: (hf_calls.append(1), _f(*a, **k))[1]
    ids = torch.randint(0, 256, (1, T))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    kept = {layer: s["kept_fraction"] for layer, s in lemo.stats(model).items()}
    d = model.config.hidden_size
    assert len(stored) == 2 and not hf_calls
    for (n, width), layer in zip(stored, (1, 2)):
        assert width == d and n == round(kept[layer] * T) < T  # [N, d] kept rows, not [T, d]
    # The HF flags are restored after every forward, so enabling/disabling checkpointing keeps working.
    assert all(model.base_model.model.model.layers[i].gradient_checkpointing for i in range(4))
    model.gradient_checkpointing_disable()
    stored.clear()
    model(input_ids=ids, labels=ids).loss.backward()
    assert stored == []


def test_checkpointing_flags_come_back_when_the_forward_raises():
    model = tiny_model("llama").train()
    _gc_on(model)
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=0.4, block_size=16, mlp="tokens", sparse_layers=[1]))
    with pytest.raises(IndexError):
        model(input_ids=torch.full((1, T), 10_000))  # out of vocabulary: the embedding raises
    assert model.model.layers[1].gradient_checkpointing
