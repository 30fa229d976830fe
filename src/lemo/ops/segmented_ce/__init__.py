from lemo.ops.segmented_ce.op import segmented_cross_entropy

__all__ = ["segmented_cross_entropy"]
