"""A sparse layer against an independent, deliberately slow reference of docs/design.md section 1."""

import math

import pytest
import torch

import lemo
from lemo.integrations.transformers.archs import layer_parts, spec_for
from lemo.testing import assert_close, tiny_model

T, B = 150, 16


def rope(x, pos, base):
    D = x.shape[-1]
    inv = 1.0 / (base ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    ang = pos * inv
    c, s = torch.cos(ang).repeat(2), torch.sin(ang).repeat(2)
    x1, x2 = x[..., : D // 2], x[..., D // 2 :]
    return x * c + torch.cat([-x2, x1], -1) * s


def slow_attention(layer, cfg, h, kept):
    """Token by token, in float64: attention over the kept tokens only, at their original positions."""
    attn = layer.self_attn
    x = layer.input_layernorm(h.float()).double()
    H, Hkv, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    Wq, Wk, Wv, Wo = (getattr(attn, n).weight.double() for n in ("q_proj", "k_proj", "v_proj", "o_proj"))
    out = h.double().clone()
    base = cfg.rope_parameters["rope_theta"]
    for i in kept:
        heads = []
        for hh in range(H):
            g = hh // (H // Hkv)
            qi = rope((x[i] @ Wq.T).view(H, D)[hh], i, base)
            logits, values = [], []
            for j in kept:
                if j > i:
                    continue
                kj = rope((x[j] @ Wk.T).view(Hkv, D)[g], j, base)
                logits.append(qi @ kj / math.sqrt(D))
                values.append((x[j] @ Wv.T).view(Hkv, D)[g])
            w = torch.softmax(torch.stack(logits), 0)
            heads.append((w[:, None] * torch.stack(values)).sum(0))
        out[i] += torch.cat(heads) @ Wo.T
    return out


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_kept_rows_match_slow_reference_and_eliminated_rows_skip_the_layer(kv_heads):
    model = tiny_model("llama", kv_heads=kv_heads, layers=2).train()
    cfg = lemo.SparsityConfig(keep_ratio=0.4, block_size=B, sparse_layers=[1], mlp="tokens")
    captured = {}
    layer = model.model.layers[1]
    # The input is captured before the layer runs: training updates it in place (inplace_residual).
    layer.register_forward_pre_hook(lambda m, a: captured.update(h=a[0].clone()))
    layer.register_forward_hook(lambda m, a, out: captured.update(out=out))
    lemo.apply(model, cfg)
    ids = torch.randint(0, 256, (1, T))
    model(input_ids=ids)
    h, out = captured["h"][0].detach(), captured["out"][0].detach()
    (blocks,) = lemo.stats(model)[1]["blocks"]
    kept = [t for blk in blocks for t in range(blk * B, min(T, (blk + 1) * B))]
    eliminated = sorted(set(range(T)) - set(kept))
    assert eliminated, "the test needs eliminated tokens"
    # mlp="tokens": an eliminated token skips the whole layer through the residual, bit for bit.
    assert torch.equal(out[eliminated], h[eliminated])
    after_attn = slow_attention(layer, model.config, h, kept)
    expected = after_attn[kept] + layer.mlp(layer.post_attention_layernorm(after_attn[kept].float())).double()
    assert_close(out[kept].double(), expected, rtol=1e-4, atol=1e-5, name="kept rows")


def test_dense_mlp_mode_runs_every_row_through_the_mlp():
    model = tiny_model("llama", layers=2).train()
    lemo.apply(model, lemo.SparsityConfig(keep_ratio=0.3, block_size=B, sparse_layers=[0], mlp="dense"))
    captured = {}
    layer = model.model.layers[0]
    # The input is captured before the layer runs: training updates it in place (inplace_residual).
    layer.register_forward_pre_hook(lambda m, a: captured.update(h=a[0].clone()))
    layer.register_forward_hook(lambda m, a, out: captured.update(out=out))
    model(input_ids=torch.randint(0, 256, (1, T)))
    h, out = captured["h"][0].detach(), captured["out"][0].detach()
    (blocks,) = lemo.stats(model)[0]["blocks"]
    elim = [t for t in range(T) if t // B not in blocks]
    expected = h[elim] + layer.mlp(layer.post_attention_layernorm(h[elim]))
    assert_close(out[elim], expected, name="eliminated rows: residual + MLP only")


def test_channels_mlp_forward_is_exact_and_backward_is_sparse():
    model = tiny_model("llama", layers=2).train()
    for p in model.parameters():
        p.requires_grad_(False)
    model.model.embed_tokens.weight.requires_grad_(True)
    ids = torch.randint(0, 256, (1, T))
    dense = model(input_ids=ids, labels=ids)
    dense.loss.backward()
    g_dense = model.model.embed_tokens.weight.grad.clone()
    model.zero_grad()
    lemo.apply(
        model,
        lemo.SparsityConfig(keep_ratio=1.0, block_size=B, mlp="channels", mlp_keep=1.0, sparse_layers="all"),
    )
    full = model(input_ids=ids, labels=ids)
    full.loss.backward()
    assert_close(full.loss, dense.loss, name="loss")
    assert_close(
        model.model.embed_tokens.weight.grad, g_dense, rtol=1e-3, atol=1e-6, name="keep all channels"
    )
    model.zero_grad()
    lemo.apply(
        model,
        lemo.SparsityConfig(keep_ratio=1.0, block_size=B, mlp="channels", mlp_keep=0.2, sparse_layers="all"),
    )
    sparse = model(input_ids=ids, labels=ids)
    sparse.loss.backward()
    assert_close(sparse.loss, dense.loss, name="forward stays exact")
    assert not torch.allclose(model.model.embed_tokens.weight.grad, g_dense)


def test_channels_mlp_refuses_trainable_mlp_weights():
    model = tiny_model("llama", layers=2).train()
    lemo.apply(model, lemo.SparsityConfig(block_size=B, mlp="channels"))
    with pytest.raises(ValueError, match="frozen MLP"):
        model(input_ids=torch.randint(0, 256, (1, T)))


def test_arch_spec_reads_qwen3_qk_norms():
    model = tiny_model("qwen3", layers=2)
    parts = layer_parts(model.model.layers[0], spec_for("qwen3"), 0, model.config)
    assert parts.attn.q_norm is model.model.layers[0].self_attn.q_norm
    assert parts.mlp_weights is not None
