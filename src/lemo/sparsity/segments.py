"""Segments: the runs of tokens that attend to each other (one document of one row, padding excluded).

Selection, scoring and attention all work per segment, so a padded batch behaves like separate runs of its
samples and a packed row like separate runs of its documents. Blocks start at each segment's first token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Segment:
    row: int
    start: int
    end: int  # exclusive

    @property
    def length(self) -> int:
        return self.end - self.start


def find_segments(
    batch: int, length: int, position_ids: torch.Tensor | None, attention_mask: torch.Tensor | None
) -> list[Segment]:
    """Split rows into segments.

    Args:
        position_ids: [B, T] or [1, T]; a new segment starts wherever the position does not grow by one
            (packed documents restart at 0). None means one run per row.
        attention_mask: [B, T] with 0 on padding, or None. Padding belongs to no segment.
    """
    device = "cpu"
    valid = torch.ones(batch, length, dtype=torch.bool, device=device)  # [B, T]
    if attention_mask is not None:
        if attention_mask.dim() != 2:
            raise ValueError(f"expected a 2D attention mask [B, T], got shape {tuple(attention_mask.shape)}.")
        valid = attention_mask.to(device=device, dtype=torch.bool).expand(batch, length)
    starts = valid.clone()  # [B, T]
    starts[:, 1:] &= ~valid[:, :-1]
    if position_ids is not None:
        pos = position_ids.to(device).expand(batch, length)  # [B, T]
        starts[:, 1:] |= valid[:, 1:] & (pos[:, 1:] != pos[:, :-1] + 1)
    last = valid.clone()  # [B, T]: a segment's last token is followed by padding, a new start, or the end
    last[:, :-1] &= ~valid[:, 1:] | starts[:, 1:]
    segments = []
    for row in range(batch):
        s = torch.nonzero(starts[row]).flatten().tolist()
        e = torch.nonzero(last[row]).flatten().tolist()
        segments.extend(Segment(row, a, b + 1) for a, b in zip(s, e))
    return segments
