from lemo.ops.mlp.reference import channel_sparse_mlp

__all__ = ["channel_sparse_mlp"]
