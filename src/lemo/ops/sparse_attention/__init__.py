from lemo.ops.sparse_attention.op import add_rows, varlen_causal_attention

__all__ = ["add_rows", "varlen_causal_attention"]
