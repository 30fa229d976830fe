"""Evidence positions of suite rows as token masks, and the hook that hands them to lemo's selection.

A suite record carries "evidence": [start, end) character spans of its prompt (`lemo.eval.suite_rows`).
`record_evidence` tokenizes the record exactly as the trainer does (`lemo.train.data.tokenize_records`) and
marks the tokens that overlap a span. `EvidenceTable` maps a training row's tokens to that mask, and
`install_evidence_hook` sets ``sparsity_state(model).evidence_mask`` ([B, T] bool) before every forward, so an
"evidence oracle" configuration keeps the blocks that hold what the answers need. Rows it does not know (the
held-out perplexity, an eval forward) get no mask.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lemo.integrations.transformers.patch import sparsity_state
from lemo.train.data.records import parse_record, tokenize_records

log = logging.getLogger(__name__)
KEY_TOKENS = 64  # a row is looked up by its first tokens (filler at a random offset: unique in practice)


def evidence_token_mask(tokenizer: Any, text: str, spans: Sequence[Sequence[int]]) -> torch.Tensor:
    """[n] bool over `tokenizer.encode(text, add_special_tokens=False)`: True where a token overlaps a span."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = torch.tensor(enc["offset_mapping"], dtype=torch.long).view(-1, 2)  # [n, 2]
    mask = torch.zeros(len(offsets), dtype=torch.bool)  # [n]
    for s, e in spans:
        mask |= (offsets[:, 0] < e) & (offsets[:, 1] > s)
    return mask


def record_evidence(record: dict[str, Any], tokenizer: Any) -> tuple[list[int], torch.Tensor]:
    """(token ids as the trainer builds them, [n] bool evidence mask over them) for one suite record.

    The evidence sits in the prompt, whose tokens open the row in both forms; the completion (or the rest
    of the text) is left unmarked, since label priority already keeps the answers.
    """
    ids = list(tokenize_records([parse_record(record, "suite")], tokenizer)[0].input_ids)
    head = record.get("prompt", record.get("text", ""))
    mask = evidence_token_mask(tokenizer, head, record.get("evidence", []))  # [n_head]
    n = min(len(mask), len(ids))
    head_ids = tokenizer.encode(head, add_special_tokens=False, verbose=False)
    # In the text form the prompt/completion seam may tokenize differently: trust the mask up to the first
    # token where the two tokenizations part (the evidence lies well before the seam).
    same = next((i for i in range(n) if head_ids[i] != ids[i]), n)
    out = torch.zeros(len(ids), dtype=torch.bool)  # [len(ids)]
    out[:same] = mask[:same]
    return ids, out


class EvidenceTable:
    """Training rows' evidence masks, found by the row's leading tokens."""

    def __init__(self, records: Sequence[dict[str, Any]], tokenizer: Any) -> None:
        self.rows: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor]] = {}
        for rec in records:
            ids, mask = record_evidence(rec, tokenizer)
            self.rows[tuple(ids[:KEY_TOKENS])] = (torch.tensor(ids, dtype=torch.long), mask)

    def mask_for(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """[B, T] bool for a batch of rows, each starting with one record (pack mode); None if none is known.

        A known row's tail beyond its record (padding) is False; an unknown row is all False.
        """
        ids = input_ids.detach().cpu()  # [B, T]
        out = torch.zeros(ids.shape, dtype=torch.bool)  # [B, T]
        found = False
        for b in range(ids.shape[0]):
            hit = self.rows.get(tuple(ids[b, :KEY_TOKENS].tolist()))
            if hit is None:
                continue
            ref, mask = hit
            n = min(len(ref), ids.shape[1])
            if torch.equal(ids[b, :n], ref[:n]):  # the whole record, not only its opening, must match
                out[b, :n] = mask[:n]
                found = True
        return out.to(input_ids.device) if found else None


def install_evidence_hook(model: nn.Module, table: EvidenceTable) -> torch.utils.hooks.RemovableHandle:
    """Before each forward of `model` (lemo applied), set ``sparsity_state(model).evidence_mask`` to the
    rows' evidence ([B, T] bool) or None. Call it once the model is final (after LoRA and `lemo.apply`)."""
    state = sparsity_state(model)

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        state.evidence_mask = None if input_ids is None else table.mask_for(input_ids)

    return model.register_forward_pre_hook(hook, with_kwargs=True)
