"""Rows: token records cut ("chunk") or packed ("pack") into `Example`s of exactly `seq_len` tokens.

Every row must give the loss something to score. HF's causal-LM loss and lemo's segmented loss both average
over the batch's scored tokens, so a row without labels beside rows with labels is harmless, but a batch with
none divides 0 by 0: the loss is NaN and the loop stops. Rows that hold no label (a chunk of prompt text only)
are therefore dropped here, with a count in the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from lemo.train.data.records import IGNORE_INDEX, TokenRecord

log = logging.getLogger(__name__)

Mode = Literal["chunk", "pack"]


@dataclass
class Example:
    """One training row. Tensors may share storage with other rows; treat them as read-only."""

    input_ids: torch.Tensor  # [T] int64
    position_ids: torch.Tensor  # [T] int64, restarting at 0 per record in "pack" mode
    labels: torch.Tensor  # [T] int64, input_ids with IGNORE_INDEX on prompts and padding (unshifted)
    attention_mask: torch.Tensor  # [T] int64, 0 on padding


def build_examples(
    token_docs: Sequence[TokenRecord] | Sequence[Sequence[int]],
    seq_len: int,
    mode: Mode,
    block_size: int = 64,
    pad_id: int = 0,
) -> list[Example]:
    """Cut or pack tokenized records into rows of exactly `seq_len` tokens (see `lemo.train.data`).

    `token_docs` are `TokenRecord`s or plain id lists (texts, every token trained on). `pad_id` fills unused
    row tails in "pack" mode; it is never trained on (labels -100, attention_mask 0). Supervised records
    without any label are skipped, and so are rows left with nothing to score, each with a log line.

    Raises:
        ValueError: --seq-len below one block, too few tokens for a row, or (in "pack" mode) a completion that
            does not fit in a row.
    """
    if seq_len < block_size:
        raise ValueError(
            f"--seq-len {seq_len} is below one block ({block_size} tokens); use --seq-len >= {block_size}."
        )
    if mode not in ("chunk", "pack"):
        raise ValueError(f"mode={mode!r} is not supported; use 'chunk' or 'pack'.")
    records = [d if isinstance(d, TokenRecord) else TokenRecord(d) for d in token_docs]
    supervised = any(r.labels is not None for r in records)
    if supervised:
        trained = [r.labels is None or any(y != IGNORE_INDEX for y in r.labels) for r in records]
        if not all(trained):
            log.warning(
                "%d of %d records have no token to train on (a conversation without an assistant turn?), "
                "e.g. %s; skipped them.",
                trained.count(False),
                len(records),
                records[trained.index(False)].source or f"record {trained.index(False)}",
            )
            records = [r for r, t in zip(records, trained, strict=True) if t]
    rows = _chunk(records, seq_len) if mode == "chunk" else _pack(records, seq_len, pad_id)
    # Plain text keeps every row, exactly as before supervised data existed.
    return _drop_unscored(rows, seq_len) if supervised else rows


def _drop_unscored(rows: list[Example], seq_len: int) -> list[Example]:
    # Label 0 of a row is never a target: the loss shifts labels left, and nothing precedes position 0.
    kept = [e for e in rows if bool((e.labels[1:] != IGNORE_INDEX).any())]
    if not kept:
        raise ValueError(
            f"no row of --seq-len {seq_len} holds a completion token to train on; check that the records have "
            "completions or assistant turns (in --data-mode chunk, --data-mode pack keeps each prompt in the row "
            "of its completion)."
        )
    if len(kept) < len(rows):
        log.info(
            "%d of %d rows hold only prompt text (nothing to learn from); dropped them.",
            len(rows) - len(kept),
            len(rows),
        )
    return kept


def _chunk(records: Sequence[TokenRecord], seq_len: int) -> list[Example]:
    total = sum(len(r.input_ids) for r in records)
    rows = total // seq_len
    if rows == 0:
        raise ValueError(
            f"the documents hold {total} tokens, fewer than one row of --seq-len {seq_len}; "
            "lower --seq-len or add text."
        )
    flat = torch.cat([torch.as_tensor(r.input_ids, dtype=torch.long) for r in records])  # [N]
    ids = flat[: rows * seq_len].view(rows, seq_len)  # [R, T]
    positions = torch.arange(seq_len)  # [T], shared by every row
    ones = torch.ones(seq_len, dtype=torch.long)  # [T], shared by every row
    if all(r.labels is None for r in records):
        # labels alias input_ids: HF shifts labels into a new tensor, never in place.
        return [Example(ids[r], positions, ids[r], ones) for r in range(rows)]
    flat_labels = torch.cat(
        [torch.as_tensor(r.input_ids if r.labels is None else r.labels, dtype=torch.long) for r in records]
    )  # [N], cut exactly like flat, so each label stays under its token
    labels = flat_labels[: rows * seq_len].view(rows, seq_len)  # [R, T]
    return [Example(ids[r], positions, labels[r], ones) for r in range(rows)]


def _pack(records: Sequence[TokenRecord], seq_len: int, pad_id: int) -> list[Example]:
    # A text longer than a row is cut into row-sized pieces first; each piece then packs like a record.
    # A supervised record stays one piece: its prompt is cut from the left instead (see _truncate_left).
    pieces: list[tuple[torch.Tensor, torch.Tensor | None]] = []  # (ids [<= T], labels [<= T] or None)
    truncated = 0
    for rec in records:
        ids = torch.as_tensor(rec.input_ids, dtype=torch.long)  # [n]
        if rec.labels is None:
            pieces.extend((ids[i : i + seq_len], None) for i in range(0, len(ids), seq_len))
            continue
        labels = torch.as_tensor(rec.labels, dtype=torch.long)  # [n]
        if len(ids) > seq_len:
            ids, labels = _truncate_left(ids, labels, seq_len, rec.source)
            truncated += 1
        pieces.append((ids, labels))
    if truncated:
        log.warning(
            "%d supervised records are longer than --seq-len %d; cut their prompts from the left so that "
            "every completion stays whole.",
            truncated,
            seq_len,
        )
    if not pieces:
        raise ValueError("the documents hold 0 tokens; add text.")
    fit = _FirstFit(len(pieces), seq_len)
    rows: list[list[tuple[torch.Tensor, torch.Tensor | None]]] = []
    for piece in pieces:
        r = fit.take(len(piece[0]))
        if r == len(rows):
            rows.append([])
        rows[r].append(piece)
    return [_packed_row(row, seq_len, pad_id) for row in rows]


def _truncate_left(
    ids: torch.Tensor, labels: torch.Tensor, seq_len: int, source: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The last `seq_len` tokens, provided they hold every label and a token before the first one.

    Cutting from the left drops the oldest context, which matters least to the completion; cutting the
    record into pieces would train a completion piece without its prompt.
    """
    first = int((labels != IGNORE_INDEX).nonzero()[0])  # the first trained token (the record has one)
    # The first trained token is predicted from the token before it, so that token must stay too.
    need = len(ids) - first + (first > 0)
    if need > seq_len:
        raise ValueError(
            f"{source or 'a record'}: its completion holds {len(ids) - first} tokens, and with one prompt token "
            f"before it that does not fit in a row of --seq-len {seq_len}; raise --seq-len to at least {need} or "
            "shorten the completion."
        )
    return ids[-seq_len:], labels[-seq_len:]  # [T], [T]


class _FirstFit:
    """First fit in O(log rows) per piece: a max segment tree over every row's free space.

    A linear scan over rows is quadratic: 50k short documents into 4K rows took ~35 s. Leaves start at full
    capacity, so unopened rows sit to the right of every opened one and "leftmost leaf with room" is exactly
    first fit, opening a new row only when no open row has room.
    """

    def __init__(self, max_rows: int, capacity: int) -> None:
        self.size = 1 << (max_rows - 1).bit_length()  # leaves: a power of two >= max_rows
        self.tree = [capacity] * (2 * self.size)  # tree[i] = max free space below node i; leaves at size..

    def take(self, need: int) -> int:
        i = 1
        while i < self.size:
            i = 2 * i if self.tree[2 * i] >= need else 2 * i + 1
        self.tree[i] -= need
        row, i = i - self.size, i // 2
        while i:
            self.tree[i] = max(self.tree[2 * i], self.tree[2 * i + 1])
            i //= 2
        return row


def _packed_row(pieces: list[tuple[torch.Tensor, torch.Tensor | None]], seq_len: int, pad_id: int) -> Example:
    used = sum(len(ids) for ids, _ in pieces)
    pad = seq_len - used
    ids = torch.cat([*(ids for ids, _ in pieces), torch.full((pad,), pad_id, dtype=torch.long)])  # [T]
    # Padding continues the last record's positions instead of restarting at 0, so backends that find
    # record boundaries from position resets (varlen attention) do not see the padding as a record.
    spans = [len(ids) for ids, _ in pieces]
    spans[-1] += pad
    position_ids = torch.cat([torch.arange(n) for n in spans])  # [T]
    labels = torch.cat(
        [
            *(piece if lab is None else lab for piece, lab in pieces),
            torch.full((pad,), IGNORE_INDEX, dtype=torch.long),
        ]
    )  # [T]
    attention_mask = torch.ones(seq_len, dtype=torch.long)  # [T]
    attention_mask[used:] = 0
    return Example(ids, position_ids, labels, attention_mask)


def collate(examples: Sequence[Example]) -> dict[str, torch.Tensor]:
    """Stack rows into a batch: input_ids, position_ids, labels, attention_mask, each [B, T] int64."""
    if not examples:
        raise ValueError("collate got no examples; pass at least one Example.")
    return {
        name: torch.stack([getattr(e, name) for e in examples])  # [B, T]
        for name in ("input_ids", "position_ids", "labels", "attention_mask")
    }
