from lemo.ops.mlp.channels import channel_sparse_mlp

__all__ = ["channel_sparse_mlp"]
