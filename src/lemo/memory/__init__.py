"""Memory for long sequences, exact and independent of elimination: host offload of checkpointed layer inputs
and row-tiled computation. Imports torch only; the sparse layer and the model patch both use it."""

from lemo.memory.checkpoint import offloaded_checkpoint
from lemo.memory.host import HostOffloader, OffloadStats
from lemo.memory.tiled import tiled_rows, tiled_rows_many

__all__ = ["HostOffloader", "OffloadStats", "offloaded_checkpoint", "tiled_rows", "tiled_rows_many"]
