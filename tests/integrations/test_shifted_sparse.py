"""LongLoRA's shifted sparse attention (S²-Attn): the core op against an explicit loop, and the model switch."""

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model

from lemo.integrations.transformers import (
    disable_shifted_sparse_attention,
    enable_shifted_sparse_attention,
    shifted_sparse,
)
from lemo.integrations.transformers.shifted_sparse import shifted_sparse_attention
from lemo.testing import tiny_model

B, H, T, D = 2, 4, 64, 8


def qkv(kv_heads: int, seed: int = 0, grad: bool = False, heads: int = H) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(B, heads, T, D), (B, kv_heads, T, D), (B, kv_heads, T, D)]
    return tuple(torch.randn(s, generator=g).requires_grad_(grad) for s in shapes)


def naive_s2(q, k, v, groups: int) -> torch.Tensor:
    """Head by head: roll (second half only), mask to causal-within-group, softmax, roll back. [B, T, H, D]."""
    G = T // groups
    pos = torch.arange(T)
    allowed = (pos[:, None] // G == pos[None, :] // G) & (pos[None, :] <= pos[:, None])  # [T, T]
    out, heads = [], q.shape[1]
    for h in range(heads):
        kv = h // (heads // k.shape[1])
        shift = G // 2 if h >= heads // 2 else 0  # odd head counts: the larger half is shifted
        qh, kh, vh = (x.roll(-shift, dims=1) for x in (q[:, h], k[:, kv], v[:, kv]))  # [B, T, D]
        scores = (qh @ kh.transpose(1, 2)) / D**0.5  # [B, T, T]
        oh = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ vh  # [B, T, D]
        out.append(oh.roll(shift, dims=1))
    return torch.stack(out, dim=2)  # [B, T, H, D]


def test_one_group_without_shift_is_causal_sdpa():
    q, k, v = qkv(kv_heads=4)
    dense = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)  # [B, T, H, D]
    assert torch.equal(shifted_sparse_attention(q, k, v, 1, shift=False), dense)
    shifted = shifted_sparse_attention(q, k, v, 1)
    assert torch.equal(shifted[:, :, : H // 2], dense[:, :, : H // 2])  # unshifted heads
    assert not torch.allclose(shifted[:, :, H // 2 :], dense[:, :, H // 2 :])


@pytest.mark.parametrize("torch_gqa", [True, False])
@pytest.mark.parametrize("heads,kv_heads", [(4, 1), (4, 2), (4, 4), (9, 3), (9, 9)])  # 9/3: SmolLM2's layout
def test_matches_the_naive_loop_in_values_and_gradients(heads, kv_heads, torch_gqa, monkeypatch):
    monkeypatch.setattr(shifted_sparse, "_TORCH_GQA", torch_gqa)  # False: the torch < 2.5 path
    q, k, v = qkv(kv_heads, grad=True, heads=heads)
    q2, k2, v2 = (x.detach().clone().requires_grad_() for x in (q, k, v))
    out = shifted_sparse_attention(q, k, v, 4)
    ref = naive_s2(q2, k2, v2, 4)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    for name, a, b in (("q", q, q2), ("k", k, k2), ("v", v, v2)):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-5, msg=f"d{name}")


def test_unshifted_heads_never_look_across_group_boundaries():
    q, k, v = qkv(kv_heads=2)
    G = T // 4
    before = shifted_sparse_attention(q, k, v, 4)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, G - 1] += 5.0  # the last token of group 0
    v2[:, :, G - 1] -= 5.0
    after = shifted_sparse_attention(q, k2, v2, 4)
    assert torch.equal(after[:, G:, : H // 2], before[:, G:, : H // 2])
    # Shifted heads' group [G/2, 3G/2) carries it into the first half of group 1: that is what the shift is for.
    assert not torch.allclose(after[:, G : G + G // 2, H // 2 :], before[:, G : G + G // 2, H // 2 :])
    assert torch.equal(after[:, G + G // 2 :, H // 2 :], before[:, G + G // 2 :, H // 2 :])


def test_lengths_that_cannot_be_grouped_name_the_multiple():
    q, k, v = (x[:, :, :62] for x in qkv(kv_heads=2))
    with pytest.raises(ValueError, match="sequence length 62 is not a multiple of 4"):
        shifted_sparse_attention(q, k, v, 4)
    q, k, v = (x[:, :, :60] for x in qkv(kv_heads=2))  # groups of 15 cannot be halved
    with pytest.raises(ValueError, match="multiple of 8"):
        shifted_sparse_attention(q, k, v, 4)


def lora_llama():
    model = tiny_model("llama", layers=2, hidden=64, heads=4, kv_heads=2, vocab=128)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    return get_peft_model(model, config)


def test_model_switch_trains_sparse_evaluates_dense_and_reverts_bitwise():
    torch.manual_seed(0)
    model = lora_llama().train()
    ids = torch.randint(0, 128, (2, T))
    with torch.no_grad():
        dense_train = model(input_ids=ids).logits
        dense_eval = model.eval()(input_ids=ids).logits
    model.train()

    enable_shifted_sparse_attention(model)
    assert model.config._attn_implementation == "lemo_s2"
    out = model(input_ids=ids, labels=ids)
    assert not torch.allclose(out.logits, dense_train, atol=1e-4)
    out.loss.backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        ones = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        assert torch.equal(ones, out.logits.detach())
        causal = torch.ones(T, T, dtype=torch.bool).tril().expand(2, 1, T, T)  # a materialized causal mask
        assert torch.equal(model(input_ids=ids, attention_mask=causal).logits, out.logits.detach())
        assert torch.equal(model.eval()(input_ids=ids).logits, dense_eval)
    model.train()

    disable_shifted_sparse_attention(model)
    assert model.config._attn_implementation == "sdpa"
    assert not any(hasattr(m, "_lemo_s2_group_fraction") for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, dense_train)
    disable_shifted_sparse_attention(model)  # a no-op when off


def test_model_switch_refuses_padding_bad_lengths_and_fractions():
    model = tiny_model("llama", layers=2, vocab=128).train()
    enable_shifted_sparse_attention(model, group_fraction=0.5)
    ids = torch.randint(0, 128, (2, T))
    mask = torch.ones_like(ids)
    mask[0, -5:] = 0
    with pytest.raises(ValueError, match="does not support padding"):
        model(input_ids=ids, attention_mask=mask)
    with pytest.raises(ValueError, match="sequence length 63 is not a multiple of 2"):
        model(input_ids=ids[:, :63])
    with pytest.raises(ValueError, match="1/n for a whole n"):
        enable_shifted_sparse_attention(model, group_fraction=0.3)
