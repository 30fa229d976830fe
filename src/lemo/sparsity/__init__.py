"""Token elimination: segments, scoring, selection and the sparse decoder-layer forward (no model library here)."""

from lemo.sparsity.backward import backward_layer_forward
from lemo.sparsity.layer import sparse_layer_forward
from lemo.sparsity.parts import AttentionParts, LayerParts
from lemo.sparsity.scoring import BlockScorer, OracleScorer, oracle_map
from lemo.sparsity.segments import Segment, find_segments
from lemo.sparsity.selection import choose_rows, select_rows
from lemo.sparsity.state import Selection, SparsityState
from lemo.sparsity.trimmed import trimmed_layer_forward, trimmed_rows

__all__ = [
    "AttentionParts",
    "BlockScorer",
    "LayerParts",
    "OracleScorer",
    "Segment",
    "Selection",
    "SparsityState",
    "backward_layer_forward",
    "choose_rows",
    "find_segments",
    "oracle_map",
    "select_rows",
    "sparse_layer_forward",
    "trimmed_layer_forward",
    "trimmed_rows",
]
