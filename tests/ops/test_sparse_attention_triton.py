"""The Triton sparse-attention kernels against the PyTorch reference, on CPU through Triton's interpreter.

Tiny shapes: the interpreter runs each program in numpy. Its tiles are 32 x 16 (see triton.py), so a segment
of 100 rows crosses several tiles, both loop phases and a partial last tile.
"""

import pytest
import torch

from lemo.ops.sparse_attention import add_rows, reference, varlen_causal_attention
from lemo.ops.sparse_attention.op import add_rows_

pytestmark = pytest.mark.usefixtures("interpreter")

TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


def rel_err(actual, expected):
    a, e = actual.double(), expected.double()
    return ((a - e).norm() / e.norm().clamp_min(1e-30)).item()


def attention_case(cu, H, Hkv, D, dtype, seed=0):
    """Output and q/k/v gradients of both backends, the reference in float64 on the same (rounded) inputs."""
    g = torch.Generator().manual_seed(seed)
    N = cu[-1]
    q, k, v = (torch.randn(N, h, D, generator=g).to(dtype) for h in (H, Hkv, Hkv))
    do = torch.randn(N, H, D, generator=g).to(dtype)
    got = [x.clone().requires_grad_() for x in (q, k, v)]
    ref = [x.double().requires_grad_() for x in (q, k, v)]
    o = varlen_causal_attention(*got, cu, D**-0.5, backend="triton")
    o_ref = reference.varlen_causal_attention(*ref, cu, D**-0.5)
    o.backward(do)
    o_ref.backward(do.double())
    assert o.dtype == dtype and o.shape == (N, H, D)
    return [(o, o_ref)] + [(a.grad, b.grad) for a, b in zip(got, ref)]


@pytest.mark.parametrize(
    ("cu", "H", "Hkv", "D"),
    [
        ([0, 100], 4, 2, 16),  # T not a multiple of the tiles; GQA 2
        ([0, 10], 2, 2, 16),  # one block, shorter than a tile; GQA 1
        ([0, 37, 37, 130, 131], 6, 2, 16),  # packed: an empty and a one-row segment; GQA 3
        ([0, 45, 90], 4, 1, 16),  # GQA 4, two documents
        ([0, 40], 2, 1, 64),  # head size 64
        ([0, 33], 2, 2, 128),  # head size 128
        ([0, 50], 3, 3, 24),  # head size padded to 32 inside
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_varlen_attention_matches_reference(cu, H, Hkv, D, dtype):
    for name, (a, b) in zip(("out", "dq", "dk", "dv"), attention_case(cu, H, Hkv, D, dtype)):
        assert rel_err(a, b) < TOL[dtype], f"{name}: relative error {rel_err(a, b):.2e}"


def test_no_attention_across_documents():
    """Changing one document's keys and values leaves the other document's outputs and gradients unchanged."""
    cu = [0, 40, 90]
    q, k, v = torch.randn(90, 2, 16), torch.randn(90, 1, 16), torch.randn(90, 1, 16)
    o1 = varlen_causal_attention(q, k, v, cu, 0.25, backend="triton")
    k2, v2 = k.clone(), v.clone()
    k2[:40], v2[:40] = torch.randn(40, 1, 16), torch.randn(40, 1, 16)
    o2 = varlen_causal_attention(q, k2, v2, cu, 0.25, backend="triton")
    assert torch.equal(o1[40:], o2[40:]) and not torch.allclose(o1[:40], o2[:40])


def test_kept_blocks_of_a_sequence_all_and_minimum():
    """Rows chosen block-wise from a 75-token sequence (partial last block): all kept, sparse, and sink+local only."""
    T, b = 75, 16
    q, k, v = torch.randn(T, 2, 16), torch.randn(T, 1, 16), torch.randn(T, 1, 16)
    for kept in ([0, 1, 2, 3, 4], [0, 2, 4], [0, 4]):
        rows = torch.cat([torch.arange(n * b, min(T, (n + 1) * b)) for n in kept])  # [N]
        args = (q[rows], k[rows], v[rows], [0, rows.numel()], 0.25)
        got = varlen_causal_attention(*args, backend="triton")
        torch.testing.assert_close(got, reference.varlen_causal_attention(*args), rtol=1e-5, atol=1e-6)


def test_add_rows_matches_reference_with_gradients():
    res = torch.randn(50, 40, requires_grad=True)
    rows = torch.tensor([3, 7, 8, 20, 49])
    upd = torch.randn(5, 40, requires_grad=True)
    out = add_rows(res, rows, upd, backend="triton")
    ref = reference.add_rows(res, rows, upd)
    torch.testing.assert_close(out, ref)
    w = torch.randn(50, 40)
    g = torch.autograd.grad((out * w).sum(), (res, upd))
    g_ref = torch.autograd.grad((ref * w).sum(), (res, upd))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b)


def test_add_rows_inplace_writes_in_place_and_differentiates():
    x = torch.randn(30, 20, requires_grad=True)
    rows = torch.tensor([0, 5, 29])
    upd = torch.randn(3, 20, requires_grad=True)
    buf = x * 2  # an intermediate nobody else saved: safe to update in place
    ptr = buf.data_ptr()
    out = add_rows_(buf, rows, upd, backend="triton")
    assert out.data_ptr() == ptr
    expected = (x * 2).index_add(0, rows, upd)
    torch.testing.assert_close(out, expected)
    w = torch.randn(30, 20)
    g = torch.autograd.grad((out * w).sum(), (x, upd))
    g_ref = torch.autograd.grad((expected * w).sum(), (x, upd))
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b)


def test_add_rows_inplace_refuses_a_buffer_that_autograd_saved():
    """The pre-add residual is not saved by the add; a norm that saved it makes autograd raise, never mis-differentiate."""
    x = torch.randn(10, 8, requires_grad=True)
    h = x * 1.0
    normed = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True))  # saves h, as RMSNorm does
    add_rows_(h, torch.tensor([1, 2]), torch.randn(2, 8), backend="triton")
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        normed.sum().backward()


def test_auto_backend_on_cpu_is_the_reference():
    q, k, v = torch.randn(20, 2, 16), torch.randn(20, 2, 16), torch.randn(20, 2, 16)
    out = varlen_causal_attention(q, k, v, [0, 20], 0.25)  # auto: CPU tensors take the reference
    assert torch.equal(out, reference.varlen_causal_attention(q, k, v, [0, 20], 0.25))
