"""Which rows a sparse layer keeps (docs/design.md section 1, step 3), and when a choice is reused instead of
made (section 1.2).

`select_rows` scores and selects per segment: the forced blocks (sink, local), then with `label_priority` the
blocks holding labelled positions, then the scorer's best or random blocks (`random_fraction`). `choose_rows`
is the per-layer entry point, with its two reuse rules made explicit:
- recompute: activation checkpointing runs a layer again in backward on the same input; the forward's choice
  is reused (keyed by the input's storage, shape and version), so the recomputed graph matches and nothing is
  scored or drawn twice;
- shared selection: every sparse layer after the first of a forward reuses the first one's choice.
"""

from __future__ import annotations

import torch

from lemo.config import SparsityConfig
from lemo.ops import blocks_to_tokens, blocks_with_any, select_by_ratio, select_by_threshold
from lemo.sparsity.parts import LayerParts
from lemo.sparsity.scoring import BlockScorer
from lemo.sparsity.segments import Segment
from lemo.sparsity.state import Selection, SparsityState
from lemo.sparsity.supervision import supervision_scores


def select_rows(
    parts: LayerParts,
    x: torch.Tensor,
    segments: list[Segment],
    scorer: BlockScorer,
    config: SparsityConfig,
    keep_ratio: float,
    threshold: float,
    label_mask: torch.Tensor | None = None,
    evidence_mask: torch.Tensor | None = None,
    query_mask: torch.Tensor | None = None,
) -> Selection:
    """Score and select the kept rows of every segment.

    Args:
        x: [B, T, d] normed hidden states.
        label_mask: [B, T] bool, positions that predict a label; their blocks come first with
            `config.label_priority`.
        evidence_mask: [B, T] bool, positions known to matter (an evaluation oracle); their blocks come first.
        query_mask: [B, T] bool, the positions whose attention `scorer="supervision"` reads.
    """
    _B, T, _ = x.shape
    b = config.block_size
    rows, cu, blocks = [], [0], []
    for seg in segments:
        nb = -(-seg.length // b)
        priority = None
        if evidence_mask is not None:
            priority = [blocks_with_any(evidence_mask[seg.row, seg.start : seg.end], b)]  # [nb]
        if config.label_priority and label_mask is not None:
            labelled = blocks_with_any(label_mask[seg.row, seg.start : seg.end], b)  # [nb]
            priority = [*(priority or []), labelled]
        if config.selection == "ratio" and keep_ratio >= 1.0:
            kept = torch.arange(nb, device=x.device)  # everything kept: no need to score
        elif config.selection == "ratio":
            if config.random_fraction >= 1.0:
                scores = torch.zeros(nb, device=x.device)  # random blocks: the scores are never read
            else:
                scores = _score(parts, x, seg, scorer, config, query_mask)  # [nb]
            kept = select_by_ratio(
                scores,
                keep_ratio,
                config.sink_blocks,
                config.local_blocks,
                priority=priority,
                random_fraction=config.random_fraction,
            )
        else:
            scores = _score(parts, x, seg, scorer, config, query_mask)  # [nb]
            kept = select_by_threshold(
                scores, threshold, config.sink_blocks, config.local_blocks, priority=priority
            )
        kept = kept.to(x.device)
        tokens = blocks_to_tokens(kept, b, seg.length) + (seg.row * T + seg.start)  # [n_s]
        rows.append(tokens)
        cu.append(cu[-1] + tokens.numel())
        blocks.append(kept.tolist())
    row_ids = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long, device=x.device)  # [N]
    total = sum(s.length for s in segments)
    return Selection(row_ids, cu, blocks, (row_ids.numel() / total) if total else 1.0)


def _score(
    parts: LayerParts,
    x: torch.Tensor,
    seg: Segment,
    scorer: BlockScorer,
    config: SparsityConfig,
    query_mask: torch.Tensor | None,
) -> torch.Tensor:
    """[nb] scores of one segment: the configured scorer, or the attention the query positions pay each block."""
    xs = x[seg.row, seg.start : seg.end].detach()  # [n, d]
    if config.scorer != "supervision":
        return scorer(parts, xs, config.block_size)
    nb = -(-seg.length // config.block_size)
    if query_mask is None:
        return torch.zeros(nb, device=x.device)  # nothing supervised: the random share and positions decide
    queries = query_mask[seg.row, seg.start : seg.end].nonzero().flatten()  # [nq]
    return supervision_scores(parts, xs, queries, config.block_size)


def choose_rows(
    parts: LayerParts,
    hidden: torch.Tensor,
    position_ids: torch.Tensor | None,
    state: SparsityState,
    scorer: BlockScorer,
) -> Selection:
    """This layer's kept rows: cached for a recompute of the same input, shared, or scored now."""
    B, T, _ = hidden.shape
    # A recompute (activation checkpointing around the whole layer) sees the same input: reuse the selection, so
    # the recomputed graph matches the first one exactly and scoring is not paid twice.
    key = (hidden.data_ptr(), tuple(hidden.shape), hidden._version)
    sel = state.cached_selection(parts.index, key)
    if sel is None and state.config.shared_selection:
        sel = state.first_selection()
    if sel is None:
        cfg = state.config
        # Random blocks never read the scores: skip the full-length norm that only the scorer would use.
        scored = cfg.selection != "ratio" or cfg.random_fraction < 1.0
        with torch.no_grad():
            x = parts.input_norm(hidden) if scored else hidden  # [B, T, d]; selection is not differentiated
            sel = select_rows(
                parts,
                x,
                state.segments(B, T, position_ids),
                scorer,
                cfg,
                state.keep_ratio.get(parts.index, 1.0),
                state.threshold.get(parts.index, 0.0),
                state.label_mask if _fits(state.label_mask, B, T) else None,
                state.evidence_mask if _fits(state.evidence_mask, B, T) else None,
                state.query_mask if _fits(state.query_mask, B, T) else None,
            )
    state.store_selection(parts.index, key, sel)
    return sel


def _fits(mask: torch.Tensor | None, B: int, T: int) -> bool:
    return mask is not None and tuple(mask.shape) == (B, T)


def full_rows(
    state: SparsityState, batch: int, length: int, position_ids: torch.Tensor | None, device: torch.device
) -> Selection:
    """Every row of every segment, for a dense layer run by the sparse forward (tiled or offloaded).

    Made once per forward and never stored as a layer's selection, so shared selection and `lemo.stats` see
    only the sparse layers.
    """
    if state.full_selection is None:
        segments = state.segments(batch, length, position_ids)
        rows = [torch.arange(s.start, s.end, device=device) + s.row * length for s in segments]  # [n_s] each
        cu = [0]
        for r in rows:
            cu.append(cu[-1] + r.numel())
        b = state.config.block_size
        blocks = [list(range(-(-s.length // b))) for s in segments]
        row_ids = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long, device=device)  # [N]
        state.full_selection = Selection(row_ids, cu, blocks, 1.0)
    return state.full_selection
