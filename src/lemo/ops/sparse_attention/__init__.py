from lemo.ops.sparse_attention.op import add_rows, add_rows_, query_rows_attention, varlen_causal_attention

__all__ = ["add_rows", "add_rows_", "query_rows_attention", "varlen_causal_attention"]
