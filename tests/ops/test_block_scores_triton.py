"""The fused Triton block-score kernel against the tiled reference, on CPU through Triton's interpreter."""

import pytest
import torch

from lemo.ops import block_score_map, block_scores
from lemo.ops.block_scores import reference

pytestmark = pytest.mark.usefixtures("interpreter")


@pytest.mark.parametrize(
    ("T", "H", "Hkv", "D", "b"),
    [
        (100, 4, 2, 16, 16),  # T not a multiple of b; interpreter tiles of 32 hold 2 x 2 blocks
        (20, 2, 2, 16, 32),  # one (partial) block; GQA 1
        (75, 3, 1, 32, 8),  # GQA 3, small blocks
        (64, 4, 1, 64, 16),  # GQA 4, head size 64
        (40, 2, 1, 128, 16),  # head size 128
        (50, 2, 2, 24, 16),  # head size padded to 32 inside
        (70, 2, 1, 16, 64),  # block larger than the interpreter's tile: the tile grows to the block
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_block_map_matches_reference(T, H, Hkv, D, b, dtype):
    g = torch.Generator().manual_seed(T * H + D)
    q, k = torch.randn(T, H, D, generator=g).to(dtype), torch.randn(T, Hkv, D, generator=g).to(dtype)
    got = block_score_map(q, k, b, backend="triton")
    ref = reference.block_score_map(q, k, b)
    assert got.dtype == torch.float32 and got.shape == ref.shape
    # bf16 products are exact in fp32; only the summation order differs from the reference's einsum.
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    torch.testing.assert_close(
        block_scores(q, k, b, backend="triton"), reference.informativeness(ref), rtol=1e-5, atol=1e-4
    )


def test_unsupported_block_size_falls_back_to_the_reference():
    q, k = torch.randn(50, 2, 16), torch.randn(50, 2, 16)
    torch.testing.assert_close(
        block_score_map(q, k, 12, backend="triton"), reference.block_score_map(q, k, 12)
    )
