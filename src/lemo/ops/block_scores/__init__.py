from lemo.ops.block_scores.op import block_score_map, block_scores
from lemo.ops.block_scores.reference import informativeness

__all__ = ["block_score_map", "block_scores", "informativeness"]
