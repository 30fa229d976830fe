"""Per-model runtime state of token elimination: the current forward's segments, selections and stats."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lemo.config import SparsityConfig
from lemo.memory import HostOffloader
from lemo.sparsity.segments import Segment, find_segments


@dataclass
class Selection:
    rows: torch.Tensor  # [N] int64 kept rows of the flattened [B*T] sequence, sorted within each segment
    cu_seqlens: list[int]  # S+1 offsets of each segment's kept rows in `rows`
    blocks: list[list[int]]  # kept block ids per segment (segment-relative)
    kept_fraction: float


@dataclass
class SparsityState:
    config: SparsityConfig
    layers: list[int]
    keep_ratio: dict[int, float]
    threshold: dict[int, float]
    attention_mask: torch.Tensor | None = None  # the 2D mask of the current forward (captured by a hook)
    keep_layer_inputs: bool = False  # someone records layer outputs this forward: no in-place residual update
    label_mask: torch.Tensor | None = None  # [B, T] bool, positions that predict a label (for label_priority)
    # [B, T] bool, the positions whose attention the "supervision" scorer reads (lemo.sparsity.supervision); with
    # backward elimination their blocks also come first, as the labelled blocks do in forward elimination.
    query_mask: torch.Tensor | None = None
    query_far: bool = (
        False  # plain text: query_mask holds candidates, the scorer reads those attending farthest
    )
    # [B, T] bool, the positions later tokens copy n-grams from (SparsityConfig.copy_ngram): kept after the
    # labelled blocks, or first in plain text with copy_plain_text (label_mask is then None; with copy_repeats the
    # later occurrences too); None without them
    copy_mask: torch.Tensor | None = None
    # [B, T] bool, positions known to hold what the loss depends on, kept first (set by the caller, e.g. the
    # capability suite's evidence oracle, which knows where the facts are; None in normal training).
    evidence_mask: torch.Tensor | None = None
    # [B, T] bool, the positions lemo's segmented loss scores this forward (labelled; `trim_last_layer` computes the
    # last layer for these, intersected with the kept rows when the loss drops eliminated positions). None: the
    # last layer runs every row.
    loss_rows: torch.Tensor | None = None
    # this step keeps every block (SparsityConfig.dense_tail's last steps, set by the training loop)
    dense_step: bool = False
    offloader: HostOffloader | None = None  # config.offload == "cpu": where checkpointed inputs wait
    full_selection: Selection | None = None  # every row, for dense layers run by the sparse forward
    _segments: list[Segment] | None = None
    _selections: dict[int, tuple[tuple, Selection]] = field(default_factory=dict)
    last: dict[int, Selection] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: SparsityConfig, num_layers: int) -> SparsityState:
        """The state of a model with `num_layers` decoder layers. Its sparse layers and each one's keep ratio and
        threshold are resolved here, once (a list holds one value per sparse layer or one per layer), and
        refused with a ValueError when they do not fit the model."""
        layers = config.resolve_layers(num_layers)
        per_layer = {name: config.per_layer(name, layers, num_layers) for name in ("keep_ratio", "threshold")}
        return cls(config, layers, per_layer["keep_ratio"], per_layer["threshold"])

    def keep(self, layer: int) -> tuple[float, float]:
        """The keep ratio and threshold sparse layer `layer` selects by in this step: every block in a dense step."""
        if self.dense_step:
            return 1.0, 0.0
        return self.keep_ratio.get(layer, 1.0), self.threshold.get(layer, 0.0)

    def begin_forward(self, attention_mask: torch.Tensor | None) -> None:
        """Called at each top-level forward: forget the previous forward's segments and selections."""
        self.attention_mask = (
            attention_mask if attention_mask is not None and attention_mask.dim() == 2 else None
        )
        self._segments = None
        self.full_selection = None
        self._selections.clear()
        if self.offloader is not None:
            self.offloader.begin_step()

    def segments(self, batch: int, length: int, position_ids: torch.Tensor | None) -> list[Segment]:
        if self._segments is None:
            self._segments = find_segments(batch, length, position_ids, self.attention_mask)
        return self._segments

    def cached_selection(self, layer: int, key: tuple) -> Selection | None:
        """The selection made for the same input earlier in this step (activation-checkpoint recompute)."""
        hit = self._selections.get(layer)
        return hit[1] if hit is not None and hit[0] == key else None

    def first_selection(self) -> Selection | None:
        """The selection of the first sparse layer that ran in this forward (for `shared_selection`)."""
        if not self._selections:
            return None
        return self._selections[min(self._selections)][1]

    def last_selection(self) -> Selection | None:
        """The selection of the last sparse layer that ran in this forward (whose kept rows the loss scores)."""
        if not self._selections:
            return None
        return self._selections[max(self._selections)][1]

    def store_selection(self, layer: int, key: tuple, selection: Selection) -> None:
        self._selections[layer] = (key, selection)
        self.last[layer] = selection
