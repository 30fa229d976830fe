"""The compiled Triton kernels against the references at real shapes, on a CUDA GPU (`pytest -m gpu`).

References run on the same GPU in float32 from the same (rounded) inputs; errors are ||got - ref|| / ||ref||.
"""

import pytest
import torch

from lemo.ops import block_score_map, segmented_cross_entropy
from lemo.ops.block_scores import reference as bs_ref
from lemo.ops.sparse_attention import add_rows, varlen_causal_attention
from lemo.ops.sparse_attention import reference as attn_ref
from lemo.ops.sparse_attention.op import add_rows_

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("cuda")]

TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2}


def rel_err(actual, expected):
    a, e = actual.double(), expected.double()
    return ((a - e).norm() / e.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize(
    ("cu", "H", "Hkv"),
    [
        ([0, 4000], 32, 8),  # one long segment, T not a multiple of 64, GQA 4
        ([0, 1000, 1000, 2999, 3000, 4100], 12, 4),  # packed documents: empty, partial, one-row; GQA 3
        ([0, 64], 8, 8),  # one block (the minimum kept), GQA 1
    ],
)
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_attention_forward_backward(cu, H, Hkv, D, dtype):
    g = torch.Generator(device="cuda").manual_seed(D + H)
    N = cu[-1]
    q, k, v, do = (torch.randn(N, h, D, device="cuda", generator=g).to(dtype) for h in (H, Hkv, Hkv, H))
    got = [x.clone().requires_grad_() for x in (q, k, v)]
    ref = [x.float().requires_grad_() for x in (q, k, v)]
    o = varlen_causal_attention(*got, cu, D**-0.5, backend="triton")
    o.backward(do)
    o_ref = attn_ref.varlen_causal_attention(*ref, cu, D**-0.5)
    o_ref.backward(do.float())
    pairs = [("out", o, o_ref)] + [(n, a.grad, b.grad) for n, a, b in zip(("dq", "dk", "dv"), got, ref)]
    for name, a, b in pairs:
        assert torch.isfinite(a).all(), name
        assert rel_err(a, b) < TOL[dtype], f"{name}: {rel_err(a, b):.2e}"


def test_attention_all_kept_equals_dense_sdpa():
    """Every block kept: the varlen kernel on the whole sequence is dense causal attention."""
    T, H, Hkv, D = 8192, 32, 8, 128
    q, k, v = (torch.randn(T, h, D, device="cuda", dtype=torch.bfloat16) for h in (H, Hkv, Hkv))
    o = varlen_causal_attention(q, k, v, [0, T], D**-0.5, backend="triton")
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.float().transpose(0, 1),
        k.float().transpose(0, 1),
        v.float().transpose(0, 1),
        is_causal=True,
        enable_gqa=True,
    ).transpose(0, 1)
    assert rel_err(o, ref) < 1e-2


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(
    ("T", "H", "Hkv", "D", "b"), [(5000, 32, 8, 128, 64), (700, 12, 4, 64, 64), (64, 4, 4, 64, 64)]
)
def test_block_scores(T, H, Hkv, D, b, dtype):
    q = torch.randn(T, H, D, device="cuda").to(dtype)
    k = torch.randn(T, Hkv, D, device="cuda").to(dtype)
    got = block_score_map(q, k, b, backend="triton")
    ref = bs_ref.block_score_map(q, k, b)
    # bf16 products are exact in fp32; the reference's fp32 einsum may use TF32 on some setups, hence 1e-3.
    assert rel_err(got, ref) < 1e-3


@pytest.mark.parametrize("train_weight", [False, True])
def test_segmented_ce(train_weight):
    N, d, V = 5000, 1024, 32000
    hidden = torch.randn(N, d, device="cuda", dtype=torch.bfloat16)
    weight = (torch.randn(V, d, device="cuda") * d**-0.5).to(torch.bfloat16)
    labels = torch.randint(0, V, (N,), device="cuda")
    labels[-1] = -100
    out = {}
    for backend in ("triton", "reference"):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_(train_weight)
        loss = segmented_cross_entropy(h, w, labels, 2048, backend=backend)
        loss.backward()
        out[backend] = [loss.detach(), h.grad] + ([w.grad] if train_weight else [])
    torch.testing.assert_close(out["triton"][0], out["reference"][0], rtol=1e-4, atol=1e-4)
    for a, b in zip(out["triton"][1:], out["reference"][1:]):
        assert rel_err(a, b) < 2e-2


def test_add_rows_and_inplace():
    res = torch.randn(10000, 4096, device="cuda", dtype=torch.bfloat16)
    rows = torch.randperm(10000, device="cuda")[:4000].sort().values
    upd = torch.randn(4000, 4096, device="cuda", dtype=torch.bfloat16)
    expected = attn_ref.add_rows(res, rows, upd)
    torch.testing.assert_close(add_rows(res, rows, upd, backend="triton"), expected)
    buf = res.clone()
    add_rows_(buf, rows, upd, backend="triton")
    torch.testing.assert_close(buf, expected)


@pytest.mark.parametrize(("dtype", "keep", "tol"), [(torch.float32, 0.4, 1e-3), (torch.bfloat16, 1.0, 5e-2)])
def test_fine_tuning_step_matches_reference_path(dtype, keep, tol):
    """A LoRA step of a small model: loss and every adapter gradient, triton vs reference.

    fp32 with elimination (the selections match exactly, so the comparison is tight); bf16 with every block
    kept (bf16 rounding may swap near-tied blocks between backends, which would compare different models).
    """
    pytest.importorskip("peft")
    from peft import LoraConfig, get_peft_model

    import lemo
    from lemo.testing import tiny_model

    results = {}
    for backend in ("triton", "reference"):
        model = tiny_model("llama", hidden=512, heads=8, kv_heads=2, layers=4, vocab=32000).to("cuda", dtype)
        model = get_peft_model(
            model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
        )
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.02)
        # attention_kernel="lemo": the Triton step runs lemo's attention kernel, not SDPA ("auto" here)
        cfg = lemo.SparsityConfig(
            keep_ratio=keep, block_size=64, sparse_layers="all", backend=backend, attention_kernel="lemo"
        )
        lemo.apply(model, cfg)
        ids = torch.randint(0, 32000, (1, 3000), generator=torch.Generator().manual_seed(0)).cuda()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = {n: p.grad.float() for n, p in model.named_parameters() if p.requires_grad}
        results[backend] = (loss.detach().float(), grads, [s["blocks"] for s in lemo.stats(model).values()])
    (l_t, g_t, b_t), (l_r, g_r, b_r) = results["triton"], results["reference"]
    assert b_t == b_r, "both backends must keep the same blocks"
    torch.testing.assert_close(l_t, l_r, rtol=tol, atol=tol)
    worst = max(rel_err(g_t[n], g_r[n]) for n in g_r)
    assert worst < tol, f"worst adapter-gradient relative error {worst:.2e}"
