"""A whole LoRA fine-tuning step with backend="triton" (interpreted on CPU) against backend="reference"."""

import pytest
import torch

import lemo
from lemo.testing import assert_close, tiny_model

pytestmark = pytest.mark.usefixtures("interpreter")

T = 150  # not a multiple of the block size


def lora_model(backend, keep):
    peft = pytest.importorskip("peft")
    model = tiny_model("llama", kv_heads=2).train()  # GQA 2, head size 16
    cfg = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], lora_dropout=0.0
    )
    model = peft.get_peft_model(model, cfg)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero, which would zero every LoRA-A gradient
            torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(len(name)))
    # attention_kernel="lemo": the Triton path runs lemo's attention kernel too ("auto" would run SDPA, the
    # reference's attention, for this one-row batch)
    cfg = lemo.SparsityConfig(
        keep_ratio=keep, block_size=16, sparse_layers="all", backend=backend, attention_kernel="lemo"
    )
    return lemo.apply(model, cfg)


@pytest.mark.parametrize("keep", [0.4, 1.0])
def test_step_matches_reference_path(keep):
    ids = torch.randint(0, 256, (1, T), generator=torch.Generator().manual_seed(0))
    out = {}
    for backend in ("triton", "reference"):
        model = lora_model(backend, keep)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        out[backend] = (loss.detach(), grads, [s["blocks"] for s in lemo.stats(model).values()])
    (loss_t, grads_t, blocks_t), (loss_r, grads_r, blocks_r) = out["triton"], out["reference"]
    assert blocks_t == blocks_r
    assert_close(loss_t, loss_r, name="loss")
    assert grads_t.keys() == grads_r.keys() and len(grads_r) == 4 * 4 * 2
    for name in grads_r:
        assert_close(grads_t[name], grads_r[name], rtol=1e-3, atol=1e-6, name=name)
