"""Tensors in, tensors out: the numerical building blocks of lemo. Imports torch (and optionally triton) only."""

from lemo.ops.block_scores import block_score_map, block_scores, informativeness
from lemo.ops.mlp import channel_sparse_mlp
from lemo.ops.rope import apply_rope
from lemo.ops.segmented_ce import segmented_cross_entropy
from lemo.ops.select_blocks import (
    blocks_to_tokens,
    blocks_with_any,
    dilate_scores,
    select_by_ratio,
    select_by_threshold,
)
from lemo.ops.sparse_attention import add_rows, query_rows_attention, varlen_causal_attention

__all__ = [
    "add_rows",
    "apply_rope",
    "block_score_map",
    "block_scores",
    "blocks_to_tokens",
    "blocks_with_any",
    "channel_sparse_mlp",
    "dilate_scores",
    "informativeness",
    "query_rows_attention",
    "segmented_cross_entropy",
    "select_by_ratio",
    "select_by_threshold",
    "varlen_causal_attention",
]
