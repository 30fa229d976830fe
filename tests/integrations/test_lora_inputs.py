"""LoRA adapters on their input as given (lemo.integrations.lora_inputs): the same numbers as PEFT's fp32 copy, less
saved memory, and PEFT's path back after restore."""

from __future__ import annotations

import pytest
import torch

from lemo.integrations.lora_inputs import UpcastLinear, keep_lora_inputs, restore_lora_inputs
from lemo.testing import loss_and_grads, tiny_model, with_lora


def _bf16_model_with_fp32_adapters():
    model = with_lora(tiny_model("llama", layers=2, hidden=64, intermediate=128).to(torch.bfloat16))
    a = next(p for n, p in model.named_parameters() if "lora_A" in n)
    assert a.dtype == torch.float32  # PEFT keeps adapters in fp32 on a bf16 model: the case this is for
    return model


def _saved_bytes(model, ids) -> int:
    """Bytes of the distinct storages autograd keeps for backward over one forward."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids)
    return sum(storages.values())


def test_upcast_linear_matches_the_cast_then_linear_in_output_and_both_gradients():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 16, dtype=torch.bfloat16, requires_grad=True)  # [B, T, d_in]
    w = torch.randn(4, 16, requires_grad=True)  # [r, d_in], fp32
    grad = torch.randn(3, 5, 4)  # [B, T, r]
    ref = torch.nn.functional.linear(x.to(torch.float32), w)
    ref_gx, ref_gw = torch.autograd.grad(ref, (x, w), grad)
    out = UpcastLinear.apply(x, w)
    gx, gw = torch.autograd.grad(out, (x, w), grad)
    assert out.dtype == torch.float32 and gx.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(gx, ref_gx, rtol=0, atol=0)
    torch.testing.assert_close(gw, ref_gw, rtol=1e-6, atol=1e-7)  # one mm over the flattened rows in both


def test_the_model_computes_the_same_loss_and_lora_gradients_with_less_saved_memory():
    model = _bf16_model_with_fp32_adapters()
    ids = torch.randint(0, 256, (1, 96))
    loss0, grads0 = loss_and_grads(model, ids)
    saved0 = _saved_bytes(model, ids)
    installed = keep_lora_inputs(model)
    assert len(installed) == 2 * 4  # q, k, v, o in each of the 2 layers
    loss1, grads1 = loss_and_grads(model, ids)
    saved1 = _saved_bytes(model, ids)
    assert loss1 == loss0
    for name, g in grads0.items():
        torch.testing.assert_close(grads1[name], g, rtol=1e-5, atol=1e-7, msg=name)
    # PEFT's path keeps 4 fp32 copies per layer (4 x 96 rows x 64 x 4 bytes); this one at most the bf16 inputs.
    assert saved0 - saved1 >= 2 * (4 * 96 * 64 * 4 - 2 * 96 * 64 * 2)
    restore_lora_inputs(installed)
    loss2, grads2 = loss_and_grads(model, ids)
    assert loss2 == loss0 and _saved_bytes(model, ids) == saved0
    assert all(torch.equal(grads2[n], g) for n, g in grads0.items())


def test_adapters_that_need_peft_own_path_are_left_alone():
    # dropout draws its mask on the values it is given; an fp32 model has nothing to save
    model = tiny_model("llama", layers=1).to(torch.bfloat16)
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.1)
    assert keep_lora_inputs(get_peft_model(model, cfg)) == []
    assert keep_lora_inputs(with_lora(tiny_model("llama", layers=1))) == []


def test_under_autocast_the_adapter_runs_as_peft_runs_it():
    model = _bf16_model_with_fp32_adapters()
    ids = torch.randint(0, 256, (1, 64))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss0, grads0 = loss_and_grads(model, ids)
    installed = keep_lora_inputs(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss1, grads1 = loss_and_grads(model, ids)
    restore_lora_inputs(installed)
    assert loss1 == loss0
    assert all(torch.equal(grads1[n], g) for n, g in grads0.items())


@pytest.mark.parametrize("share", [True, False])
def test_lemo_apply_installs_it_by_default_and_remove_takes_it_away(share):
    import lemo

    model = _bf16_model_with_fp32_adapters()
    ids = torch.randint(0, 256, (1, 128))
    model.train()
    loss0, _ = loss_and_grads(model, ids)
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=1.0, share_lora_inputs=share))
    flags = [
        m.__dict__.get("cast_input_dtype_enabled", True)
        for n, m in model.named_modules()
        if n.endswith("q_proj")
    ]
    assert flags == [not share] * 2
    lemo.remove(model)
    assert all(getattr(m, "cast_input_dtype_enabled", True) for m in model.modules())
    assert all("forward" not in m.__dict__ for n, m in model.named_modules() if "lora_A" in n)
    loss1, _ = loss_and_grads(model, ids)
    assert loss1 == loss0
