"""The compiled `query_rows_attention` kernels (kept queries against all keys) against the reference on a CUDA GPU
(`pytest -m gpu`): output and q, k, v gradients at real shapes, the reference in float32 on the same inputs."""

import pytest
import torch

from lemo.ops.sparse_attention import query_rows_attention
from lemo.ops.sparse_attention import reference as attn_ref

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("cuda")]

TOL = {torch.float32: 1e-4, torch.bfloat16: 2e-2}
BLOCK = 64


def rel_err(actual, expected):
    a, e = actual.double(), expected.double()
    return ((a - e).norm() / e.norm().clamp_min(1e-30)).item()


def kept_layout(seg_lens, keep, seed):
    """Whole 64-row blocks kept at random (first and last always; none in a segment of keep 0), as backward
    elimination keeps them: q_index [Nq] on the GPU, cu_q, cu_kv."""
    g = torch.Generator().manual_seed(seed)
    index, cu_q, cu_kv = [], [0], [0]
    for n, r in zip(seg_lens, keep):
        nb = -(-n // BLOCK)
        chosen = set() if r == 0 else {0, nb - 1, *torch.randperm(nb, generator=g)[: round(r * nb)].tolist()}
        index += [i for b in sorted(chosen) for i in range(b * BLOCK, min(n, (b + 1) * BLOCK))]
        cu_q.append(len(index))
        cu_kv.append(cu_kv[-1] + n)
    return torch.tensor(index, device="cuda"), cu_q, cu_kv


@pytest.mark.parametrize(
    ("seg_lens", "keep", "H", "Hkv"),
    [
        ([4000], [0.6], 32, 8),  # one segment, partial last block, GQA 4
        ([1000, 300, 2999, 1], [0.5, 0.0, 0.7, 1.0], 12, 4),  # packed: a segment with no kept row; GQA 3
        ([640], [1.0], 8, 8),  # every block kept, GQA 1
    ],
)
@pytest.mark.parametrize("D", [64, 128])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_query_rows_forward_backward(seg_lens, keep, H, Hkv, D, dtype):
    q_index, cu_q, cu_kv = kept_layout(seg_lens, keep, seed=D + H)
    g = torch.Generator(device="cuda").manual_seed(D + H)
    Nq, Nkv = cu_q[-1], cu_kv[-1]
    rand = lambda n, h: torch.randn(n, h, D, device="cuda", generator=g).to(dtype)
    q, do = rand(Nq, H), rand(Nq, H)  # [Nq, H, D]
    k, v = rand(Nkv, Hkv), rand(Nkv, Hkv)  # [Nkv, H_kv, D]
    got = [x.clone().requires_grad_() for x in (q, k, v)]
    ref = [x.float().requires_grad_() for x in (q, k, v)]
    o = query_rows_attention(*got, q_index, cu_q, cu_kv, D**-0.5)  # auto: the kernel on CUDA tensors
    o.backward(do)
    o_ref = attn_ref.query_rows_attention(*ref, q_index, cu_q, cu_kv, D**-0.5)
    o_ref.backward(do.float())
    pairs = [("out", o, o_ref)] + [(n, a.grad, b.grad) for n, a, b in zip(("dq", "dk", "dv"), got, ref)]
    for name, a, b in pairs:
        assert torch.isfinite(a).all(), name
        assert rel_err(a, b) < TOL[dtype], f"{name}: {rel_err(a, b):.2e}"
