from lemo.ops.select_blocks.reference import (
    blocks_to_tokens,
    blocks_with_any,
    dilate_scores,
    forced_blocks,
    select_by_ratio,
    select_by_threshold,
)

__all__ = [
    "blocks_to_tokens",
    "blocks_with_any",
    "dilate_scores",
    "forced_blocks",
    "select_by_ratio",
    "select_by_threshold",
]
