"""The trimmed last layer on a CUDA GPU (`pytest -m gpu`): with the Triton kernels (kept-queries attention, row
adds) it trains what the whole last layer trains, and its backward holds less memory.

bf16 and SDPA's atomics make two runs differ in the last bits, so the comparison has a tolerance.
"""

import pytest
import torch

import lemo
from lemo.testing import assert_close, tiny_model, with_lora

pytestmark = pytest.mark.gpu
T = 8192


@pytest.fixture
def gpu():
    if not torch.cuda.is_available():
        pytest.fail("this test needs a CUDA GPU; run it on the device machine (make test-gpu)")
    return torch.device("cuda")


def _run(gpu, trim: bool, labels_from: int):
    torch.manual_seed(0)
    model = with_lora(
        tiny_model("llama", layers=6, hidden=512, heads=8, kv_heads=4, vocab=1024, intermediate=1792)
    )
    model = model.to(gpu, torch.bfloat16).train()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    lemo.apply(model, lemo.SparsityConfig(trim_last_layer=trim, backend="triton"))
    ids = torch.randint(0, 1024, (1, T), generator=torch.Generator().manual_seed(1)).to(gpu)
    labels = ids.clone()
    labels[:, :labels_from] = -100
    torch.manual_seed(2)  # the same random blocks in both runs
    torch.cuda.reset_peak_memory_stats(gpu)
    base = torch.cuda.memory_allocated(gpu)
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    peak = torch.cuda.max_memory_allocated(gpu) - base
    grads = {n: p.grad.float() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach().float(), grads, peak


@pytest.mark.parametrize("labels_from", [T - T // 50, 0], ids=["completion", "plain-text"])
def test_trimmed_last_layer_on_cuda_matches_the_whole_layer_and_holds_less(gpu, labels_from):
    loss_w, grads_w, peak_w = _run(gpu, False, labels_from)
    loss_t, grads_t, peak_t = _run(gpu, True, labels_from)
    assert_close(loss_t, loss_w, rtol=2e-2, atol=2e-2, name="loss")
    for name, g in grads_w.items():
        # Relative to the gradient's norm: bf16 rounding and the kernels' other summation orders (the same check in
        # bf16 on the CPU's reference kernels gives at most 0.024).
        assert float((grads_t[name] - g).norm()) <= 0.05 * float(g.norm()), name
    assert peak_t < peak_w
