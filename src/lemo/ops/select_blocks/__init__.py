from lemo.ops.select_blocks.reference import (
    blocks_to_tokens,
    blocks_with_any,
    forced_blocks,
    select_by_ratio,
    select_by_threshold,
)

__all__ = ["blocks_to_tokens", "blocks_with_any", "forced_blocks", "select_by_ratio", "select_by_threshold"]
