"""Training data: long documents in, fixed-length rows out, in a resumable order.

The pipeline: `load_documents` (files -> strings) -> `tokenize_documents` (strings -> token ids, one EOS
after each document) -> `build_examples` (token ids -> `Example` rows of `seq_len` tokens) -> `DataOrder`
(which rows each optimizer step sees) -> `collate` (rows -> a [B, T] batch).

Two ways to make rows:
- "chunk": concatenate every document and cut consecutive rows; positions run 0..seq_len-1 in every row, so
  a row may span a document boundary (the EOS marks it). Nothing is padded; a tail shorter than a row is
  dropped.
- "pack": place whole documents into rows with greedy first-fit; positions restart at 0 at each document, so
  RoPE sees every document from its own start. Unused row tails are padding (labels -100, attention_mask 0).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

Mode = Literal["chunk", "pack"]

IGNORE_INDEX = -100
"""Label value that `torch.nn.functional.cross_entropy` (and HF losses) skip."""

_SUFFIXES = (".txt", ".jsonl")
_JSONL_HINT = 'each line must be one JSON object like {"text": "..."}'


def load_documents(paths: Sequence[str | Path]) -> list[str]:
    """Read documents from .txt files (one document per file) and .jsonl files (one {"text": ...} per line).

    A directory stands for every .txt/.jsonl file directly inside it, in sorted order. Line endings are
    normalised to "\\n"; empty (whitespace-only) documents are dropped.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a file has an unsupported suffix, a JSONL line is bad, or no document has any text.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]  # a lone path is an easy slip; accept it rather than iterate over its characters
    docs: list[str] = []
    for file in _expand(paths):
        docs.extend(_read_jsonl(file) if file.suffix == ".jsonl" else [_read_text(file)])
    docs = [d for d in docs if d.strip()]
    if not docs:
        where = str(paths[0]) if len(paths) == 1 else "the input (" + ", ".join(map(str, paths)) + ")"
        raise ValueError(f"{where} is empty; pass a file with text.")
    return docs


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist; check the path or pass a .txt/.jsonl file or a folder."
            )
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _SUFFIXES)
            if not found:
                raise ValueError(
                    f"{path} is empty; pass a file with text (a folder is read for .txt/.jsonl)."
                )
            files.extend(found)
        elif path.suffix in _SUFFIXES:
            files.append(path)
        else:
            raise ValueError(
                f"{path}: unsupported file type {path.suffix!r}; pass .txt (one document per file) or .jsonl "
                f"({_JSONL_HINT})."
            )
    return files


def _read_text(path: Path) -> str:
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: drop a BOM left by Windows editors
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not valid UTF-8 ({err.reason} at byte {err.start}); re-save it as UTF-8."
        ) from err
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _read_jsonl(path: Path) -> list[str]:
    docs = []
    for lineno, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({err.msg}); {_JSONL_HINT}.") from err
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            got = f"keys {sorted(record)}" if isinstance(record, dict) else type(record).__name__
            raise ValueError(f'{path}:{lineno}: no string "text" field (got {got}); {_JSONL_HINT}.')
        docs.append(record["text"].replace("\r\n", "\n"))
    return docs


def tokenize_documents(docs: Sequence[str], tokenizer: Any) -> list[list[int]]:
    """Token ids per document, without BOS or other special tokens, plus one EOS when the tokenizer has one.

    `tokenizer` is a HF tokenizer or any object with `encode(text) -> list[int]` and, optionally,
    `eos_token_id`. The EOS marks document boundaries inside chunked rows, so the model learns where a text
    ends.
    """
    kwargs: dict[str, Any] = {}
    if _accepts(tokenizer.encode, "add_special_tokens"):
        # verbose=False silences HF's "longer than model_max_length" warning: long rows are the point here.
        kwargs = {"add_special_tokens": False, "verbose": False}
    eos = getattr(tokenizer, "eos_token_id", None)
    out = []
    for doc in docs:
        ids = list(tokenizer.encode(doc, **kwargs))
        if eos is not None:
            ids.append(int(eos))
        out.append(ids)
    return out


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins and C extensions may have no signature
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


@dataclass
class Example:
    """One training row. Tensors may share storage with other rows; treat them as read-only."""

    input_ids: torch.Tensor  # [T] int64
    position_ids: torch.Tensor  # [T] int64, restarting at 0 per document in "pack" mode
    labels: torch.Tensor  # [T] int64, input_ids with IGNORE_INDEX on padding (the model shifts them)
    attention_mask: torch.Tensor  # [T] int64, 0 on padding


def build_examples(
    token_docs: Sequence[Sequence[int]],
    seq_len: int,
    mode: Mode,
    block_size: int = 64,
    pad_id: int = 0,
) -> list[Example]:
    """Cut or pack tokenized documents into rows of exactly `seq_len` tokens (see the module docstring).

    `pad_id` fills unused row tails in "pack" mode; it is never trained on (labels -100, attention_mask 0).
    """
    if seq_len < block_size:
        raise ValueError(
            f"--seq-len {seq_len} is below one block ({block_size} tokens); use --seq-len >= {block_size}."
        )
    if mode == "chunk":
        return _chunk(token_docs, seq_len)
    if mode == "pack":
        return _pack(token_docs, seq_len, pad_id)
    raise ValueError(f"mode={mode!r} is not supported; use 'chunk' or 'pack'.")


def _chunk(token_docs: Sequence[Sequence[int]], seq_len: int) -> list[Example]:
    total = sum(len(d) for d in token_docs)
    rows = total // seq_len
    if rows == 0:
        raise ValueError(
            f"the documents hold {total} tokens, fewer than one row of --seq-len {seq_len}; "
            "lower --seq-len or add text."
        )
    flat = torch.cat([torch.as_tensor(doc, dtype=torch.long) for doc in token_docs])  # [N]
    ids = flat[: rows * seq_len].view(rows, seq_len)  # [R, T]
    positions = torch.arange(seq_len)  # [T], shared by every row
    ones = torch.ones(seq_len, dtype=torch.long)  # [T], shared by every row
    # labels alias input_ids: HF shifts labels into a new tensor, never in place.
    return [Example(ids[r], positions, ids[r], ones) for r in range(rows)]


def _pack(token_docs: Sequence[Sequence[int]], seq_len: int, pad_id: int) -> list[Example]:
    # A document longer than a row is cut into row-sized pieces first; each piece then packs like a document.
    docs = [torch.as_tensor(doc, dtype=torch.long) for doc in token_docs]
    pieces = [doc[i : i + seq_len] for doc in docs for i in range(0, len(doc), seq_len)]  # each [<= T]
    if not pieces:
        raise ValueError("the documents hold 0 tokens; add text.")
    fit = _FirstFit(len(pieces), seq_len)
    rows: list[list[torch.Tensor]] = []
    for piece in pieces:
        r = fit.take(len(piece))
        if r == len(rows):
            rows.append([])
        rows[r].append(piece)
    return [_packed_row(row, seq_len, pad_id) for row in rows]


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


def _packed_row(docs: list[torch.Tensor], seq_len: int, pad_id: int) -> Example:
    used = sum(len(d) for d in docs)
    pad = seq_len - used
    ids = torch.cat([*docs, torch.full((pad,), pad_id, dtype=torch.long)])  # [T]
    # Padding continues the last document's positions instead of restarting at 0, so backends that find
    # document boundaries from position resets (varlen attention) do not see the padding as a document.
    spans = [len(d) for d in docs]
    spans[-1] += pad
    position_ids = torch.cat([torch.arange(n) for n in spans])  # [T]
    labels = ids.clone()  # [T]
    labels[used:] = IGNORE_INDEX
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


@dataclass(frozen=True)
class DataOrder:
    """Deterministic, resumable order of example indices.

    The order is an endless stream: epoch 0's permutation, then epoch 1's, ... each drawn from `seed` and the
    epoch number alone. Step k's batch is stream[k * batch_size : (k + 1) * batch_size], so it depends only on
    (seed, num_examples, batch_size, k): a run resumed at step k sees exactly the batches an uninterrupted run
    would. A batch may straddle two epochs; no example is dropped.
    """

    num_examples: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_examples < 1:
            raise ValueError("DataOrder needs at least one example; add text or lower --seq-len.")

    def epoch_order(self, epoch: int) -> list[int]:
        """The permutation of example indices used in `epoch`."""
        gen = torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) % 2**63)
        return torch.randperm(self.num_examples, generator=gen).tolist()

    def batches(self, start_step: int = 0, batch_size: int = 1) -> Iterator[list[int]]:
        """Endless iterator of index batches, starting with the batch of step `start_step`."""
        if batch_size < 1 or batch_size > self.num_examples:
            raise ValueError(
                f"--batch-size {batch_size} must be between 1 and the number of examples "
                f"({self.num_examples}); lower --batch-size or add text."
            )
        if start_step < 0:
            raise ValueError(f"start_step={start_step} must be >= 0.")
        epoch, offset = divmod(start_step * batch_size, self.num_examples)
        order = self.epoch_order(epoch)
        batch: list[int] = []
        while True:
            take = min(batch_size - len(batch), self.num_examples - offset)
            batch.extend(order[offset : offset + take])
            offset += take
            if offset == self.num_examples:
                epoch, offset = epoch + 1, 0
                order = self.epoch_order(epoch)
            if len(batch) == batch_size:
                yield batch
                batch = []

    def epoch_at(self, step: int, batch_size: int = 1) -> float:
        """Fractional epoch reached after `step` steps (for logs)."""
        return step * batch_size / self.num_examples
