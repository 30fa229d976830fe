from lemo.ops.rope.reference import apply_rope

__all__ = ["apply_rope"]
