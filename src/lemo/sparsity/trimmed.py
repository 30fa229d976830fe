"""The trimmed last layer (`SparsityConfig(trim_last_layer=True)`): the model's last decoder layer computes only
the rows whose output the loss reads.

The last layer's output feeds nothing but the final norm and the LM head, and the loss reads it at the labelled
positions only (with loss_tokens="kept", at those the last sparse layer kept). Every other row matters to the
last layer as a key and a value for the loss rows' queries, nothing more. So:

    every row       input norm, k, v                     (what the loss rows attend to)
    loss rows L     q, attention against every key, o, post norm, MLP, residual adds
    other rows      pass through unchanged               (their output reaches no loss)

The residual adds are out of place (`lemo.ops.add_rows`): the stored input must stay as it was.

The loss and every gradient equal those of the full layer; the layer's work and its backward's working set
scale with the loss rows (2% of a prompt/completion row, the kept 60% of a plain-text one). Under gradient
checkpointing the layer input is stored, as for a dense layer, and the recompute runs the same trimmed layer.
"""

from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from lemo.memory import HostOffloader, offloaded_checkpoint
from lemo.ops import add_rows
from lemo.sparsity.parts import LayerParts
from lemo.sparsity.query_rows import locate, query_rows_update
from lemo.sparsity.selection import full_rows
from lemo.sparsity.state import Selection, SparsityState

# Above this share of the segment rows the full layer is as fast: `lemo plan` on the Llama-3-8B shape at 32K
# without elimination puts the step-time crossover near 0.7 of the rows scored (and the peak's near 0.87), since
# the trimmed layer computes K and V apart and runs lemo's kept-queries kernel instead of SDPA.
TRIM_MAX_SHARE = 0.7


def trimmed_rows(
    state: SparsityState, batch: int, length: int, position_ids: torch.Tensor | None, mask: torch.Tensor
) -> Selection | None:
    """The rows the trimmed last layer computes: the segment rows where mask [B, T] is True. None when they are
    more than TRIM_MAX_SHARE of the segment rows (the full layer is then as cheap)."""
    full = full_rows(state, batch, length, position_ids, mask.device)
    sel = masked_rows(full, mask, state.config.block_size)
    return sel if sel.rows.numel() <= TRIM_MAX_SHARE * full.rows.numel() else None


def masked_rows(full: Selection, mask: torch.Tensor, block_size: int) -> Selection:
    """The rows of `full` (every segment row of a [B, T] batch) where mask [B, T] is True, segment by segment.

    One copy of the mask to the host; the rows go back in one copy.
    """
    flat = mask.reshape(-1).to("cpu")  # [B*T] bool
    rows_host = full.rows.to("cpu")  # [Na]
    picked, cu, blocks = [], [0], []
    for c0, c1 in zip(full.cu_seqlens[:-1], full.cu_seqlens[1:]):
        seg = rows_host[c0:c1]  # [n_s] rows of one segment, in order
        idx = flat[seg].nonzero().flatten()  # [m] indices inside the segment
        picked.append(seg[idx])
        cu.append(cu[-1] + idx.numel())
        blocks.append(sorted(set((idx // block_size).tolist())))
    rows = torch.cat(picked) if picked else torch.zeros(0, dtype=torch.long)  # [N]
    n_all = max(full.rows.numel(), 1)
    return Selection(rows.to(full.rows.device), cu, blocks, rows.numel() / n_all)


def trimmed_layer_forward(
    parts: LayerParts,
    hidden: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    position_ids: torch.Tensor | None,
    state: SparsityState,
    sel: Selection,
    checkpoint: bool = False,
    offloader: HostOffloader | None = None,
) -> torch.Tensor:
    """The last decoder layer for the rows the loss reads (see the module docstring).

    Args:
        hidden: [B, T, d] residual stream entering the layer.
        position_embeddings: (cos, sin), each [B or 1, T, D].
        sel: the rows whose output the loss reads (`trimmed_rows`).
        checkpoint: store only the layer input and recompute the trimmed layer in backward.
        offloader: with `checkpoint`, keep the stored input in host memory.
    Returns:
        [B, T, d]: the full layer's output at the loss rows, the input elsewhere.
    """
    cfg = state.config
    B, T, d = hidden.shape
    full = full_rows(state, B, T, position_ids, hidden.device)
    if sel.rows.numel() == 0:
        return hidden  # nothing is scored: the loss is a zero of the graph (lemo's segmented loss)
    rows = locate(full, sel, B * T)
    # Without padding the segment rows are every row in order: views, not [B*T]-row gathers that would be kept.
    every = full.rows.numel() == B * T
    cos, sin = position_embeddings
    cos = cos.expand(B, T, -1).reshape(B * T, -1)  # [B*T, D]
    sin = sin.expand(B, T, -1).reshape(B * T, -1)  # [B*T, D]
    if not every:
        cos, sin = cos[full.rows], sin[full.rows]  # [Na, D]
    tile = cfg.tile_tokens if cfg.tile_attention else 0

    def update(h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # An alias first: the rows' gradients from k/v and from the queries then add up inside the layer before
        # the residual's is added, the order offload's recompute has, so offload stays bit-identical.
        hr = h.view_as(h) if every else h[full.rows]  # [Na, d]
        return query_rows_update(
            parts, hr, cos, sin, full, rows, tile, split=True, backend=cfg.backend
        )  # [N, d] each

    flat = hidden.reshape(B * T, d)  # [B*T, d]
    # Only the updates come out of the checkpoint: the residual adds outside it pass the incoming gradient to
    # every row as it is, and nothing of full length is recomputed or kept beyond the stored input.
    if checkpoint and offloader is not None:
        outs = offloaded_checkpoint(update, offloader, flat)
    elif checkpoint:
        outs = torch_checkpoint(update, flat, use_reentrant=False)
    else:
        outs = update(flat)
    h = flat
    for u in outs:  # o, then y: the same two rounding steps as the dense layer's residual adds
        h = add_rows(h, sel.rows, u, backend=cfg.backend)  # [B*T, d], a new tensor: the input is stored
    return h.view(B, T, d)
