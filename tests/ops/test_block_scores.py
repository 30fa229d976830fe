import math

import pytest
import torch

from lemo.ops import block_score_map, block_scores
from lemo.ops.block_scores import reference


def brute_force(q, k, b):
    """The definition, written the slow obvious way: full T x T matrix, explicit loops over blocks."""
    T, H, D = q.shape
    kx = k.repeat_interleave(H // k.shape[1], dim=1)
    s = torch.zeros(T, T, dtype=torch.float64)
    for h in range(H):
        s += torch.relu(q[:, h].double() @ kx[:, h].double().T)
    s /= math.sqrt(D)
    nb = math.ceil(T / b)
    S = torch.zeros(nb, nb, dtype=torch.float64)
    for m in range(nb):
        for n in range(m + 1):
            vals = [
                s[i, j]
                for i in range(m * b, min(T, (m + 1) * b))
                for j in range(n * b, min(T, (n + 1) * b))
                if j <= i
            ]
            S[m, n] = max(vals)
    I = torch.tensor([S[n:, n].sum() + S[n, :n].sum() for n in range(nb)])
    return S, I


@pytest.mark.parametrize(
    ("T", "H", "Hkv", "b"), [(50, 4, 4, 8), (37, 6, 2, 8), (8, 3, 1, 8), (5, 2, 2, 8), (70, 4, 1, 16)]
)
def test_block_scores_match_brute_force(T, H, Hkv, b):
    torch.manual_seed(T)
    q, k = torch.randn(T, H, 16), torch.randn(T, Hkv, 16)
    S, I = brute_force(q, k, b)
    torch.testing.assert_close(block_score_map(q, k, b).double(), S, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(block_scores(q, k, b).double(), I, rtol=1e-5, atol=1e-5)


def test_every_block_sums_nb_entries():
    nb = 7
    I = reference.informativeness(torch.ones(nb, nb).tril())
    assert torch.equal(I, torch.full((nb,), float(nb)))


def test_tiled_computation_is_independent_of_tile_size(monkeypatch):
    torch.manual_seed(1)
    q, k = torch.randn(300, 4, 8), torch.randn(300, 2, 8)
    full = reference.block_score_map(q, k, 16)
    monkeypatch.setattr(reference, "_TILE_ELEMS", 1)  # forces one block row per tile
    torch.testing.assert_close(reference.block_score_map(q, k, 16), full)


def test_bf16_inputs_score_in_fp32():
    q, k = torch.randn(64, 2, 8).bfloat16(), torch.randn(64, 2, 8).bfloat16()
    out = block_score_map(q, k, 16)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, block_score_map(q.float(), k.float(), 16))
