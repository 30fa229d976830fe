"""Which rows a sparse layer keeps (docs/design.md section 1, step 3), and when a choice is reused instead of
made (section 1.2).

`select_blocks` is the one selection rule of every mode (forward elimination here, backward elimination after the
layer's forward or in its backward, lemo.sparsity.backward): per segment the forced blocks (sink, local), then
the priority tiers (known evidence, then with `label_priority` the blocks holding labelled positions), then the
scorer's best or random blocks (`random_fraction`). `select_rows` feeds it the forward-elimination scores.
`choose_rows` is the forward-elimination entry point per layer, with its two reuse rules made explicit:
- recompute: activation checkpointing runs a layer again in backward on the same input; the forward's choice
  is reused (keyed by the input's storage, shape and version), so the recomputed graph matches and nothing is
  scored or drawn twice;
- shared selection: every sparse layer after the first of a forward reuses the first one's choice.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lemo.config import SparsityConfig
from lemo.ops import blocks_with_any, dilate_scores, select_by_ratio, select_by_threshold
from lemo.sparsity.parts import LayerParts
from lemo.sparsity.scoring import BlockScorer
from lemo.sparsity.segments import Segment
from lemo.sparsity.state import Selection, SparsityState
from lemo.sparsity.supervision import FAR_CANDIDATES, MAX_QUERIES, spread, supervision_scores

ScoreFn = Callable[[int, Segment], torch.Tensor]
"""(segment index, segment) -> [nb] block scores; called only where the scores are read."""

PROFILE_RANGE = "lemo::select"
"""The `torch.profiler` range around every selection (scoring included), so a profiled step can say what the
selector costs (lemo.bench.profile reads ranges named "lemo::..."); free when no profiler runs."""


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
    rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    query_far: bool = False,
    copy_mask: torch.Tensor | None = None,
) -> Selection:
    """Score and select the kept rows of every segment (forward elimination).

    Args:
        x: [B, T, d] normed hidden states.
        label_mask: [B, T] bool, positions that predict a label; their blocks come first with
            `config.label_priority`.
        evidence_mask: [B, T] bool, positions known to matter (an evaluation oracle); their blocks come first.
        query_mask: [B, T] bool, the positions whose attention `scorer="supervision"` reads.
        rope: (cos, sin), each [B, T, D], the layer's rotary tables: the supervision scorer rotates q and k with
            them, as the layer's attention does.
        query_far: `query_mask` holds plain text's candidates; the scorer reads those attending farthest back.
        copy_mask: [B, T] bool, the positions later tokens copy n-grams from (`config.copy_ngram`); their blocks
            come right after the labelled ones (in plain text, where no label mask is passed, first).
    """
    tiers = priority_tiers(segments, config, evidence_mask, label_mask, copy_mask)
    queries: list[torch.Tensor | None] = []  # per segment, filled at the first score read

    def score(s: int, seg: Segment) -> torch.Tensor:
        if config.scorer == "supervision" and not queries:
            queries.extend(segment_queries(query_mask, segments, x.device, query_far))
        q = queries[s] if queries else None
        return _score(parts, x, seg, scorer, config, q, rope, query_far)  # [nb]

    return select_blocks(segments, x.shape[1], config, keep_ratio, threshold, score, tiers, x.device)


def priority_tiers(
    segments: list[Segment],
    config: SparsityConfig,
    evidence_mask: torch.Tensor | None,
    label_mask: torch.Tensor | None,
    copy_mask: torch.Tensor | None = None,
) -> list[list[torch.Tensor]]:
    """Per segment, its [nb] bool tiers kept before any scored block, in order: the blocks holding known
    evidence, then (with `config.label_priority`) the blocks holding positions that predict a label, then (with
    `config.copy_ngram`) the context blocks the labels copy n-grams from.

    Args:
        evidence_mask, label_mask, copy_mask: [B, T] bool or None (a mask that does not fit the batch is passed
            as None).
    """
    label_mask = label_mask if config.label_priority else None
    masks = [m for m in (evidence_mask, label_mask, copy_mask) if m is not None]
    b = config.block_size
    return [[blocks_with_any(m[seg.row, seg.start : seg.end], b) for m in masks] for seg in segments]


def select_blocks(
    segments: list[Segment],
    length: int,
    config: SparsityConfig,
    keep_ratio: float,
    threshold: float,
    score: ScoreFn,
    tiers: list[list[torch.Tensor]],
    device: torch.device,
) -> Selection:
    """The kept blocks of every segment, by the configured rule, as one Selection of a [B, `length`] batch.

    Shared by every mode: forward elimination (scores from the layer input), backward elimination after the
    layer's forward, and backward elimination in its backward pass (`scorer="gradient"`). `score` is called only
    where the scores are read: not with everything kept, nor with random blocks only (`random_fraction=1`).
    Random draws use torch's default generator, segment by segment in order.

    The per-segment rule branches on counts, so on the device it would wait for the GPU several times per
    segment (a packed row holds dozens). Instead every segment's scores and tiers come to the host in one copy
    each, the rule runs there (a few hundred blocks per segment), and the kept ids go back in one copy.
    """
    nbs = [-(-seg.length // config.block_size) for seg in segments]
    ratio = config.selection == "ratio"
    scored = not (
        ratio and (keep_ratio >= 1.0 or config.random_fraction >= 1.0)
    )  # else scores are never read
    flat_tiers = [t for seg_tiers in tiers for t in seg_tiers]
    # scores and tiers in one copy: the selection's only wait for the GPU
    host = _to_host([score(s, seg) for s, seg in enumerate(segments)] + flat_tiers if scored else flat_tiers)
    scores = host[: len(segments)] if scored else [torch.zeros(nb) for nb in nbs]  # [nb] each
    scores = [dilate_scores(s, config.score_dilation) for s in scores]  # [nb] each
    host_tiers = host[len(segments) :] if scored else host
    per = len(tiers[0]) if tiers else 0
    kept = []
    for s, nb in enumerate(nbs):
        prio = host_tiers[s * per : (s + 1) * per]  # [nb] bool each
        if ratio and keep_ratio >= 1.0:
            kept.append(torch.arange(nb))
        elif ratio:
            kept.append(select_by_ratio(scores[s], keep_ratio, config.sink_blocks, config.local_blocks,
                                        priority=prio, random_fraction=config.random_fraction))  # fmt: skip
        else:
            kept.append(select_by_threshold(scores[s], threshold, config.sink_blocks, config.local_blocks,
                                            priority=prio))  # fmt: skip
    return blocks_selection(kept, segments, length, config.block_size, device)


def _to_host(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The tensors (1-D) on the host, in one device-to-host copy for all of them."""
    if not tensors or all(t.device.type == "cpu" for t in tensors):
        return [t.cpu() for t in tensors]
    sizes = [t.numel() for t in tensors]
    dtype = torch.float32 if any(t.is_floating_point() for t in tensors) else tensors[0].dtype
    flat = torch.cat([t.to(dtype) for t in tensors]).cpu()  # the one copy (and wait)
    return [part.to(t.dtype) for part, t in zip(flat.split(sizes), tensors)]


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """`t` (on the host) on `device` without waiting for the GPU: a pinned buffer copied asynchronously (the
    caching host allocator keeps the buffer alive until the copy is done)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def blocks_selection(
    kept: list[torch.Tensor], segments: list[Segment], length: int, block_size: int, device: torch.device
) -> Selection:
    """The Selection of per-segment kept block ids (each [k_s], sorted, on the host), built for all segments at
    once on the host: the ids serve `Selection.blocks` (read by `lemo.stats` and the evidence meter), and the
    flat row ids (a few hundred KiB at most) go to the device in one asynchronous copy, so building a selection
    never waits for the GPU however many segments a packed row holds.
    """
    if not segments:
        return Selection(torch.zeros(0, dtype=torch.long, device=device), [0], [], 1.0)
    b = block_size
    counts = torch.tensor([k.numel() for k in kept])  # [S]
    ids = torch.cat([k.cpu().long() for k in kept])  # [K] block ids, segment after segment
    flat = ids.tolist()
    blocks, at = [], 0
    for c in counts.tolist():
        blocks.append(flat[at : at + c])
        at += c
    seg_of = torch.repeat_interleave(torch.arange(len(segments)), counts)  # [K]
    lengths = torch.tensor([seg.length for seg in segments])  # [S]
    base = torch.tensor([seg.row * length + seg.start for seg in segments])  # [S]
    offsets = ids[:, None] * b + torch.arange(b)  # [K, b] token offsets inside each segment
    inside = offsets < lengths[seg_of, None]  # [K, b] False on the padding of a partial last block
    rows = (offsets + base[seg_of, None])[inside]  # [N] row ids, sorted within each segment
    per_segment = torch.zeros(len(segments), dtype=torch.long).index_add_(
        0, seg_of, inside.sum(1)
    )  # [S] rows
    cu = [0, *per_segment.cumsum(0).tolist()]
    total = sum(seg.length for seg in segments)
    return Selection(_to_device(rows, device), cu, blocks, cu[-1] / total if total else 1.0)


def segment_queries(
    query_mask: torch.Tensor | None, segments: list[Segment], device: torch.device, far: bool = False
) -> list[torch.Tensor | None]:
    """Per segment, the query rows [nq] the supervision scorer reads (segment-relative, at most MAX_QUERIES, or
    with `far` FAR_CANDIDATES to choose from, evenly spread), on `device`; None for every segment without a mask.
    The mask comes to the host in one copy and the indices go back asynchronously, so the count of waits does not
    grow with the segments of a packed row."""
    limit = FAR_CANDIDATES if far else MAX_QUERIES
    if query_mask is None:
        return [None] * len(segments)
    mask = query_mask.cpu()  # [B, T] bool: the one wait
    return [
        _to_device(spread(mask[seg.row, seg.start : seg.end].nonzero().flatten(), limit), device)
        for seg in segments
    ]


def _score(
    parts: LayerParts,
    x: torch.Tensor,
    seg: Segment,
    scorer: BlockScorer,
    config: SparsityConfig,
    queries: torch.Tensor | None,
    rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    far: bool = False,
) -> torch.Tensor:
    """[nb] scores of one segment: the configured scorer, or the attention the query rows `queries` ([nq],
    segment-relative; None: nothing supervised; with `far`, candidates) pay each block."""
    xs = x[seg.row, seg.start : seg.end].detach()  # [n, d]
    if config.scorer != "supervision":
        return scorer(parts, xs, config.block_size)
    nb = -(-seg.length // config.block_size)
    if queries is None:
        return torch.zeros(nb, device=x.device)  # nothing supervised: the random share and positions decide
    seg_rope = None if rope is None else tuple(t[seg.row, seg.start : seg.end] for t in rope)  # [n, D] each
    return supervision_scores(parts, xs, queries, config.block_size, seg_rope, far)


def choose_rows(
    parts: LayerParts,
    hidden: torch.Tensor,
    position_ids: torch.Tensor | None,
    state: SparsityState,
    scorer: BlockScorer,
    position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Selection:
    """This layer's kept rows: cached for a recompute of the same input, shared, or scored now.

    Args:
        position_embeddings: the layer's (cos, sin), each [B or 1, T, D]; the supervision scorer rotates with them.
    """
    B, T, _ = hidden.shape
    # A recompute (activation checkpointing around the whole layer) sees the same input: reuse the selection, so
    # the recomputed graph matches the first one exactly and scoring is not paid twice.
    key = (hidden.data_ptr(), tuple(hidden.shape), hidden._version)
    sel = state.cached_selection(parts.index, key)
    if sel is None and state.config.shared_selection:
        sel = state.first_selection()
    if sel is None:
        cfg = state.config
        keep, threshold = state.keep(parts.index)
        # Random blocks (or all of them) never read the scores: skip the full-length norm only the scorer uses.
        scored = cfg.selection != "ratio" or (cfg.random_fraction < 1.0 and keep < 1.0)
        with torch.no_grad(), torch.profiler.record_function(PROFILE_RANGE):
            x = parts.input_norm(hidden) if scored else hidden  # [B, T, d]; selection is not differentiated
            sel = select_rows(
                parts,
                x,
                state.segments(B, T, position_ids),
                scorer,
                cfg,
                keep,
                threshold,
                fitting(state.label_mask, B, T),
                fitting(state.evidence_mask, B, T),
                fitting(state.query_mask, B, T),
                None
                if position_embeddings is None
                else tuple(t.expand(B, T, -1) for t in position_embeddings),
                state.query_far,
                fitting(state.copy_mask, B, T),
            )
    state.store_selection(parts.index, key, sel)
    return sel


def fitting(mask: torch.Tensor | None, B: int, T: int) -> torch.Tensor | None:
    """`mask` if it is a [B, T] mask of this batch, else None (a mask left from another batch is ignored)."""
    return mask if mask is not None and tuple(mask.shape) == (B, T) else None


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
