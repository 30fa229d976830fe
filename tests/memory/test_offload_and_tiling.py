"""Host offload of checkpointed inputs and the tiled MLP change no number; they only move and bound memory.

On a CPU the offloader copies into its host pool synchronously: the pool stands in for pinned memory, and the
code path (store, load in reverse order, one-ahead prefetch, buffer reuse) is the one a GPU runs.
"""

import pytest
import torch

import lemo
from lemo.integrations.transformers.patch import sparsity_state
from lemo.memory import HostOffloader, offloaded_checkpoint, tiled_rows
from lemo.testing import ARCHS, assert_close, loss_and_grads, tiny_model, with_lora

T = 200  # a partial last block


def _gc_on(model):
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()


def _run(model, cfg, ids, seed=3):
    lemo.apply(model, cfg)
    torch.manual_seed(seed)  # the default draws random blocks: one seed gives every run the same blocks
    return loss_and_grads(model, ids)


def _same(a, b):
    (loss_a, grads_a), (loss_b, grads_b) = a, b
    assert torch.equal(loss_a, loss_b), (loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert torch.equal(grads_a[name], grads_b[name]), name


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("mlp", ["tokens", "dense"])
def test_offload_gives_bit_identical_loss_and_gradients(arch, mlp):
    model = with_lora(tiny_model(arch)).train()
    _gc_on(model)
    ids = torch.randint(0, 256, (1, T))
    base = dict(block_size=16, mlp=mlp, sparse_layers=[1, 2])
    on_gpu = _run(model, lemo.SparsityConfig(**base), ids)
    on_host = _run(model, lemo.SparsityConfig(**base, offload="cpu"), ids)
    _same(on_host, on_gpu)
    stats = sparsity_state(model).offloader.stats
    assert stats.stored == 4  # one stored input per layer: 2 sparse (their kept rows) + 2 dense
    assert stats.bytes_live == 0  # every stored input was loaded back by backward


@pytest.mark.parametrize("sparse_layers", ["auto", "none"])
def test_offload_with_tiling_is_bit_identical_to_tiling_alone(sparse_layers):
    """With tiling every layer runs lemo's forward (dense ones keep every row); offload then changes nothing."""
    model = with_lora(tiny_model("llama")).train()
    _gc_on(model)
    ids = torch.randint(0, 256, (1, T))
    base = dict(block_size=16, sparse_layers=sparse_layers, tile_tokens=48, tile_attention=True)
    _same(
        _run(model, lemo.SparsityConfig(**base, offload="cpu"), ids),
        _run(model, lemo.SparsityConfig(**base), ids),
    )


def test_exact_plus_offload_equals_hf_checkpointing():
    """`exact+offload` is lemo with elimination off: every layer dense, checkpointed with its input on the host."""
    model = with_lora(tiny_model("llama")).train()
    _gc_on(model)
    ids = torch.randint(0, 256, (1, T))
    exact = _run(model, lemo.SparsityConfig(sparse_layers="none"), ids)
    offloaded = _run(model, lemo.SparsityConfig(sparse_layers="none", offload="cpu"), ids)
    _same(offloaded, exact)
    assert sparsity_state(model).offloader.stats.stored == 4


def test_an_offloaded_dense_layer_runs_forward_twice_not_three_times():
    """Its forward, then one recompute in backward: HF's own checkpointing (on here, and applied inside the layer's
    `forward` from transformers 5.2x) must not checkpoint lemo's recompute again."""
    model = with_lora(tiny_model("llama")).train()
    _gc_on(model)
    calls, hf_checkpoints = [], []
    layer = model.base_model.model.model.layers[0]
    layer.mlp.register_forward_hook(lambda *_: calls.append(1))
    hf_checkpoint = layer._gradient_checkpointing_func
    layer._gradient_checkpointing_func = lambda *a, **k: hf_checkpoints.append(1) or hf_checkpoint(*a, **k)
    lemo.apply(model, lemo.SparsityConfig(sparse_layers="none", offload="cpu"))
    loss_and_grads(model, torch.randint(0, 256, (1, T)))
    assert len(calls) == 2
    assert hf_checkpoints == []  # lemo's recompute is the only checkpoint around this layer


def test_offload_implies_checkpointing_and_stores_only_kept_rows():
    model = with_lora(tiny_model("llama")).train()  # no HF gradient checkpointing: offload turns it on itself
    ids = torch.randint(0, 256, (1, 256))
    cfg = lemo.SparsityConfig(block_size=16, keep_ratio=0.5, sparse_layers=[1, 2], offload="cpu")
    lemo.apply(model, cfg)
    off = sparsity_state(model).offloader
    sizes = []
    real_store = off.store
    off.store = lambda x: sizes.append(x.shape[0] if x.dim() == 2 else x.shape[1]) or real_store(x)
    loss_and_grads(model, ids)
    assert sizes == [256, 128, 128, 256]  # dense, sparse (kept half), sparse, dense
    # The pool is reused: a second step allocates no new host memory.
    pool = off.stats.pool_bytes
    loss_and_grads(model, ids)
    assert off.stats.pool_bytes == pool
    assert off.stats.prefetched >= 3  # every load after the first found its tensor copied back already


def test_offload_with_lora_dropout_replays_the_same_masks():
    model = tiny_model("llama")
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.3))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    model.train()
    _gc_on(model)
    ids = torch.randint(0, 256, (1, T))
    base = dict(block_size=16, sparse_layers=[1, 2])
    _same(
        _run(model, lemo.SparsityConfig(**base, offload="cpu"), ids),
        _run(model, lemo.SparsityConfig(**base), ids),
    )


def test_remove_restores_every_forward():
    model = with_lora(tiny_model("llama")).train()
    ids = torch.randint(0, 256, (1, T))
    before = model(input_ids=ids).logits
    lemo.apply(model, lemo.SparsityConfig(offload="cpu", tile_tokens=32, sparse_layers="none"))
    lemo.remove(model)
    layers = model.get_base_model().model.layers
    assert all("forward" not in layer.__dict__ and "forward" not in layer.mlp.__dict__ for layer in layers)
    assert torch.equal(model(input_ids=ids).logits, before)


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_tiled_mlp_equals_untiled(arch):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny_model(arch), LoraConfig(r=4, target_modules=["gate_proj", "up_proj", "down_proj",
                                                                             "q_proj"]))  # fmt: skip
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    model.train()
    ids = torch.randint(0, 256, (1, T))
    base = dict(block_size=16, sparse_layers=[1, 2])
    untiled = _run(model, lemo.SparsityConfig(**base), ids)
    for tile, whole in (
        (7, False),
        (64, False),
        (7, True),
        (64, True),
    ):  # tiles that divide nothing, and below N
        tiled = _run(model, lemo.SparsityConfig(**base, tile_tokens=tile, tile_attention=whole), ids)
        assert_close(tiled[0], untiled[0], name="loss")
        for name in untiled[1]:
            assert_close(tiled[1][name], untiled[1][name], rtol=1e-4, atol=1e-6, name=name)


def test_tiled_rows_gradients_match_a_plain_call():
    torch.manual_seed(0)
    w = torch.randn(8, 5, requires_grad=True)
    x = torch.randn(3, 11, 8, requires_grad=True)

    def fn(t):
        return torch.nn.functional.silu(t @ w) * 2

    gy = torch.randn(3, 11, 5)
    (fn(x) * gy).sum().backward()
    expected = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    y = tiled_rows(fn, x, 4)
    assert y.shape == (3, 11, 5)
    (y * gy).sum().backward()
    assert_close(x.grad, expected[0], name="dx")
    assert_close(w.grad, expected[1], name="dw")


def test_offloaded_checkpoint_reaches_parameters_when_the_input_needs_no_grad():
    w = torch.randn(4, 4, requires_grad=True)
    x = torch.randn(6, 4)  # like the first layer's input from a frozen embedding
    out = offloaded_checkpoint(lambda t: (t @ w).tanh(), HostOffloader(), x)
    out.sum().backward()
    expected = torch.autograd.grad((x @ w).tanh().sum(), w)[0]
    assert torch.equal(w.grad, expected)


def test_pool_buffers_of_different_sizes_are_reused_by_best_fit():
    off = HostOffloader()
    for _step in range(2):  # the second step finds every buffer in the pool
        off.begin_step()
        handles = [off.store(torch.full((n,), float(n))) for n in (64, 40, 40, 64, 16)]
        for h in reversed(handles):
            assert torch.equal(off.load(h), torch.full((h.host.numel(),), float(h.host.numel())))
    assert off.stats.pool_bytes == 4 * (64 + 40 + 40 + 64 + 16)


def test_pool_buffers_start_on_their_own_page():
    # CUDA pins whole pages: buffers that shared one would be registered twice (the GPU test pins them).
    import mmap

    off = HostOffloader()
    handles = [off.store(torch.ones(3)) for _ in range(8)]
    starts = [h.buffer.data_ptr() for h in handles]
    assert all(s % mmap.PAGESIZE == 0 for s in starts)
    assert len({s // mmap.PAGESIZE for s in starts}) == len(starts)


def test_forwards_without_backward_keep_no_host_memory():
    model = with_lora(tiny_model("llama")).train()
    ids = torch.randint(0, 256, (1, T))
    lemo.apply(model, lemo.SparsityConfig(block_size=16, offload="cpu"))
    off = sparsity_state(model).offloader
    with torch.no_grad():  # training mode, no graph: nothing is stored
        model(input_ids=ids, labels=ids)
    assert off.stats.stored == 0
    model(input_ids=ids, labels=ids)  # a graph dropped without its backward ...
    assert off.stats.stored == 4
    pool = off.stats.pool_bytes
    loss_and_grads(model, ids)  # ... gives its buffers back when the next forward begins, and they are reused
    assert off.stats.stored == 8 and off.stats.bytes_live == 0 and off.stats.pool_bytes == pool


def test_loading_twice_is_a_clear_error():
    off = HostOffloader()
    h = off.store(torch.ones(3))
    assert torch.equal(off.load(h), torch.ones(3))
    with pytest.raises(RuntimeError, match="loaded twice"):
        off.load(h)


def test_host_memory_that_cannot_be_had_is_a_clear_error(monkeypatch):
    import lemo.memory.host as host

    monkeypatch.setattr(host, "available_host_bytes", lambda: 2 * 2**30)
    with pytest.raises(RuntimeError, match=r"pinned host memory.*--offload none"):
        HostOffloader().store(torch.empty(2**30, dtype=torch.uint8))


def test_declared_host_memory_overrides_meminfo_and_counts_the_pool(monkeypatch):
    # A VM whose memory grows as it is touched reports little MemAvailable: LEMO_HOST_GIB states the real budget.
    import lemo.memory.host as host

    monkeypatch.setattr(host, "_HEADROOM", 0)
    monkeypatch.setenv("LEMO_HOST_GIB", str(3 * 2**10 / 2**30))  # 3 KiB, so the test stays tiny
    off = HostOffloader()
    off.store(torch.empty(2048, dtype=torch.uint8))  # 2 KiB of the 3
    with pytest.raises(RuntimeError, match=r"LEMO_HOST_GIB leaves only .* --offload none"):
        off.store(torch.empty(2048, dtype=torch.uint8))  # the pool's own 2 KiB count against the budget
    monkeypatch.setenv("LEMO_HOST_GIB", "lots")
    with pytest.raises(ValueError, match=r"LEMO_HOST_GIB='lots' is not a positive number of GiB"):
        host.available_host_bytes()
    monkeypatch.setenv("LEMO_HOST_GIB", "200")
    assert host.available_host_bytes() == 200 * 2**30


def test_bad_settings_name_the_fix():
    from lemo.config import FinetuneConfig

    with pytest.raises(ValueError, match="--sparse-layers none"):
        FinetuneConfig(sparse=False, sparsity={"offload": "cpu"})
    with pytest.raises(ValueError, match=r"offload='gpu'.*'none', 'cpu'"):
        lemo.SparsityConfig(offload="gpu")
    with pytest.raises(ValueError, match=r"tile_tokens=-1.*8192"):
        lemo.SparsityConfig(tile_tokens=-1)
    with pytest.raises(ValueError, match=r"tile_attention=True needs tile_tokens > 0"):
        lemo.SparsityConfig(tile_attention=True)
