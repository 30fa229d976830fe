"""The Triton `query_rows_attention` kernels (kept queries against all keys) against the PyTorch reference, on CPU
through Triton's interpreter: the output and the q, k, v gradients.

Tiny shapes: the interpreter's query tiles are 16 rows (configs.QUERY_INTERP), so runs of kept rows shorter or
longer than a tile make tiles that hold several non-adjacent runs, and segments cross several key tiles.
"""

import pytest
import torch

from lemo.ops.sparse_attention import query_rows_attention, reference

TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


@pytest.fixture(scope="module", autouse=True)
def _interpreted_kernels(interpreter):
    """Every test here runs the kernels in Triton's interpreter (conftest reloads triton_query.py too)."""


def rel_err(actual, expected):
    a, e = actual.double(), expected.double()
    return ((a - e).norm() / e.norm().clamp_min(1e-30)).item()


def layout(seg_lens, runs):
    """q_index [Nq], cu_q, cu_kv from segment lengths and each segment's kept runs [(start, end), ...]."""
    index, cu_q, cu_kv = [], [0], [0]
    for n, spans in zip(seg_lens, runs):
        index += [i for a, b in spans for i in range(a, b)]
        cu_q.append(len(index))
        cu_kv.append(cu_kv[-1] + n)
    return torch.tensor(index, dtype=torch.int64), cu_q, cu_kv


def attention_case(seg_lens, runs, H, Hkv, D, dtype, seed=0):
    """Output and q/k/v gradients of the kernel, and of the reference in float64 on the same (rounded) inputs."""
    g = torch.Generator().manual_seed(seed)
    q_index, cu_q, cu_kv = layout(seg_lens, runs)
    Nq, Nkv = cu_q[-1], cu_kv[-1]
    q = torch.randn(Nq, H, D, generator=g).to(dtype)  # [Nq, H, D]
    k, v = (torch.randn(Nkv, Hkv, D, generator=g).to(dtype) for _ in range(2))  # [Nkv, H_kv, D]
    do = torch.randn(Nq, H, D, generator=g).to(dtype)  # [Nq, H, D]
    got = [x.clone().requires_grad_() for x in (q, k, v)]
    ref = [x.double().requires_grad_() for x in (q, k, v)]
    o = query_rows_attention(*got, q_index, cu_q, cu_kv, D**-0.5, backend="triton")
    o_ref = reference.query_rows_attention(*ref, q_index, cu_q, cu_kv, D**-0.5)
    o.backward(do)
    o_ref.backward(do.double())
    assert o.dtype == dtype and o.shape == (Nq, H, D)
    return [(o, o_ref)] + [(a.grad, b.grad) for a, b in zip(got, ref)]


def kept_blocks(n, block, keep, seed):
    """Runs of whole kept blocks of an n-row segment (the last block partial), as backward elimination keeps them:
    the first and last block always, the others at random."""
    nb = -(-n // block)
    g = torch.Generator().manual_seed(seed)
    middle = (torch.randperm(nb - 2, generator=g)[: round(keep * (nb - 2))] + 1).tolist()
    return [(b * block, min(n, (b + 1) * block)) for b in sorted({0, nb - 1, *middle})]


@pytest.mark.parametrize(
    ("seg_lens", "runs", "H", "Hkv", "D"),
    [
        # three segments: runs starting at index 0 and ending at the segment end, a tile spanning two runs,
        # a segment with no kept row; GQA 2
        ([50, 30, 70], [[(0, 8), (20, 30), (40, 50)], [], [(5, 21), (60, 70)]], 4, 2, 16),
        # kept blocks of 8 from segments of 75 and 41 rows (partial last blocks); GQA 3; head size padded 24 -> 32
        ([75, 41], [kept_blocks(75, 8, 0.6, 1), kept_blocks(41, 8, 0.6, 2)], 6, 2, 24),
        # every row kept: plain causal attention; GQA 4; head size 40 padded to 64
        ([37], [[(0, 37)]], 4, 1, 40),
        # one query at the last row, one at row 0 of the next segment; GQA 1
        ([20, 9], [[(19, 20)], [(0, 1)]], 2, 2, 16),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_query_rows_matches_reference(seg_lens, runs, H, Hkv, D, dtype):
    for name, (a, b) in zip(("out", "dq", "dk", "dv"), attention_case(seg_lens, runs, H, Hkv, D, dtype)):
        assert rel_err(a, b) < TOL[dtype], f"{name}: relative error {rel_err(a, b):.2e}"


def test_unattended_keys_get_zero_gradient():
    """Keys after a segment's last kept row are seen by no query: their dK and dV are exactly zero."""
    q_index, cu_q, cu_kv = layout([40], [[(0, 10)]])
    q = torch.randn(10, 2, 16)
    k, v = torch.randn(40, 1, 16, requires_grad=True), torch.randn(40, 1, 16, requires_grad=True)
    query_rows_attention(q, k, v, q_index, cu_q, cu_kv, 0.25, backend="triton").sum().backward()
    assert k.grad[10:].abs().max() == 0 and v.grad[10:].abs().max() == 0 and v.grad[:10].abs().max() > 0


def test_backend_dispatch(monkeypatch):
    """auto on CPU runs the reference; "triton" runs the kernel; a sliding window has no kernel."""
    import lemo.ops.sparse_attention.triton_query as tq

    monkeypatch.delenv("LEMO_BACKEND", raising=False)
    q_index, cu_q, cu_kv = layout([24], [[(0, 8), (16, 24)]])
    q, k, v = torch.randn(16, 2, 16), torch.randn(24, 2, 16), torch.randn(24, 2, 16)
    args = (q, k, v, q_index, cu_q, cu_kv, 0.25)
    calls = []
    kernel = tq.query_rows_attention
    monkeypatch.setattr(tq, "query_rows_attention", lambda *a: calls.append(1) or kernel(*a))
    expected = reference.query_rows_attention(*args)
    assert torch.equal(query_rows_attention(*args), expected) and not calls
    torch.testing.assert_close(query_rows_attention(*args, backend="triton"), expected, rtol=1e-5, atol=1e-6)
    assert calls == [1]
    windowed = reference.query_rows_attention(*args, sliding_window=4)
    assert torch.equal(query_rows_attention(*args, sliding_window=4), windowed) and calls == [1]
    with pytest.raises(RuntimeError, match="forced"):
        query_rows_attention(*args, sliding_window=4, backend="triton")
