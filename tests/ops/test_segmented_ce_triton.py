"""The fused chunked LM-head + cross-entropy against the reference, on CPU through Triton's interpreter."""

import pytest
import torch

from lemo.ops import segmented_cross_entropy
from lemo.ops.segmented_ce import reference

pytestmark = pytest.mark.usefixtures("interpreter")


def rel_err(actual, expected):
    a, e = actual.double(), expected.double()
    return ((a - e).norm() / e.norm().clamp_min(1e-30)).item()


def case(N, d, V, chunk, dtype, *, bias=False, train_weight=True, num_items=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, d, generator=g).to(dtype)
    weight = (torch.randn(V, d, generator=g) * d**-0.5).to(dtype)
    b = torch.randn(V, generator=g).to(dtype) if bias else None
    labels = torch.randint(0, V, (N,), generator=g)
    labels[::4] = -100  # ignored rows, as the shifted last position and padding are
    out = {}
    for backend in ("triton", "reference"):
        leaves = [hidden.clone().requires_grad_(), weight.clone().requires_grad_(train_weight)]
        if bias:
            leaves.append(b.clone().requires_grad_())
        loss = segmented_cross_entropy(
            leaves[0],
            leaves[1],
            labels,
            chunk,
            num_items=num_items,
            bias=leaves[2] if bias else None,
            backend=backend,
        )
        (loss * 0.7).backward()  # a grad_output other than 1, as under gradient accumulation
        out[backend] = [loss.detach()] + [x.grad for x in leaves if x.requires_grad]
    return out["triton"], out["reference"]


@pytest.mark.parametrize(
    ("N", "d", "V", "chunk", "kw"),
    [
        (50, 16, 300, 16, {}),  # chunk does not divide N; V not a power of two
        (33, 32, 1000, 64, {"train_weight": False}),  # one chunk; frozen LM head (LoRA)
        (40, 16, 257, 7, {"bias": True, "num_items": 55}),  # bias, HF's num_items_in_batch divisor
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loss_and_gradients_match_reference(N, d, V, chunk, kw, dtype):
    got, ref = case(N, d, V, chunk, dtype, **kw)
    assert got[0].dtype == torch.float32
    torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-5)
    tol = 1e-5 if dtype == torch.float32 else 2e-2
    for i, (a, b) in enumerate(zip(got[1:], ref[1:])):
        assert a.dtype == b.dtype and rel_err(a, b) < tol, f"gradient {i}: relative error {rel_err(a, b):.2e}"


def test_no_grad_computes_only_the_loss():
    hidden, weight = torch.randn(20, 16), torch.randn(64, 16)
    labels = torch.randint(0, 64, (20,))
    with torch.no_grad():
        got = segmented_cross_entropy(hidden, weight, labels, 8, backend="triton")
    torch.testing.assert_close(got, reference.segmented_cross_entropy(hidden, weight, labels, 8))
