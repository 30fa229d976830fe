"""Host offload on a CUDA GPU (`pytest -m gpu`): the side-stream copies change no number, and the stored layer
inputs leave GPU memory for pinned host memory.

Gradients are compared with a tolerance here (bit for bit on the CPU): SDPA's backward on a GPU accumulates with
atomics, so two runs of the same configuration already differ in the last bits.
"""

import pytest
import torch

import lemo
from lemo.integrations.transformers.patch import sparsity_state
from lemo.testing import loss_and_grads, tiny_model, with_lora

pytestmark = pytest.mark.gpu


@pytest.fixture
def gpu():
    if not torch.cuda.is_available():
        pytest.fail("this test needs a CUDA GPU; run it on the device machine (make test-gpu)")
    return torch.device("cuda")


def _model(gpu):
    model = with_lora(tiny_model("llama", layers=6, hidden=512, heads=8, kv_heads=4, vocab=1024))
    model = model.to(gpu, torch.bfloat16).train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    return model


@pytest.mark.parametrize("sparse_layers", ["auto", "none"])
def test_offload_on_cuda_is_bit_identical_and_frees_gpu_memory(gpu, sparse_layers):
    model = _model(gpu)
    ids = torch.randint(0, 1024, (1, 8192), device=gpu)
    results, peaks = {}, {}
    for offload in ("none", "cpu"):
        lemo.apply(model, lemo.SparsityConfig(sparse_layers=sparse_layers, offload=offload))
        torch.manual_seed(0)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        results[offload] = loss_and_grads(model, ids)
        torch.cuda.synchronize()
        peaks[offload] = torch.cuda.max_memory_allocated()
    (loss_a, grads_a), (loss_b, grads_b) = results["none"], results["cpu"]
    assert torch.equal(
        loss_a, loss_b
    )  # the forward is deterministic: copies to the host and back change nothing
    for name in grads_a:
        a, b = grads_a[name].double(), grads_b[name].double()
        assert ((a - b).norm() / a.norm().clamp_min(1e-30)).item() < 1e-2, name
    stats = sparsity_state(model).offloader.stats
    assert stats.prefetched >= 4  # loads found their tensor already copied back: the prefetch ran ahead
    assert stats.bytes_live == 0
    assert peaks["cpu"] < peaks["none"], peaks


def test_pinned_pool_is_exact_sized_and_reused(gpu):
    from lemo.memory import HostOffloader

    off = HostOffloader()
    x = torch.randn(3000, 512, device=gpu, dtype=torch.bfloat16)  # 3 MB: a power-of-two allocator would pin 4
    h = off.store(x)
    assert h.buffer.numel() == x.numel() * 2 and h.buffer.is_pinned()
    assert torch.equal(off.load(h), x)
    off.begin_step()
    h2 = off.store(x * 2)
    assert h2.buffer.data_ptr() == h.buffer.data_ptr()  # the pool buffer came back for the next step
    assert torch.equal(off.load(h2), x * 2)
    off.release()


def test_small_buffers_each_pin_their_own_pages(gpu):
    # Two small buffers from malloc can share a page, and CUDA refuses to register a page twice; the pool maps
    # each buffer separately, so many tiny stores all pin.
    from lemo.memory import HostOffloader

    off = HostOffloader()
    xs = [torch.full((7,), float(i), device=gpu) for i in range(64)]  # 28 bytes each
    handles = [off.store(x) for x in xs]
    assert all(h.buffer.is_pinned() for h in handles)
    for h, x in zip(reversed(handles), reversed(xs)):
        assert torch.equal(off.load(h), x)
    off.release()
