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
from lemo.ops import blocks_with_any
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
    ids, mask, _ = _record_tokens(record, tokenizer)
    return ids, mask


def _record_tokens(record: dict[str, Any], tokenizer: Any) -> tuple[list[int], torch.Tensor, int]:
    """`record_evidence`'s (ids, mask) and how many leading ids are the prompt's."""
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
    return ids, out, same


class EvidenceTable:
    """Training rows' evidence masks, found by the row's leading tokens."""

    def __init__(self, records: Sequence[dict[str, Any]], tokenizer: Any) -> None:
        self.rows: dict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor, int]] = {}
        for rec in records:
            ids, mask, n_prompt = _record_tokens(rec, tokenizer)
            self.rows[tuple(ids[:KEY_TOKENS])] = (torch.tensor(ids, dtype=torch.long), mask, n_prompt)

    def lookup(self, input_ids: torch.Tensor) -> list[tuple[torch.Tensor, int] | None]:
        """Per row of `input_ids` ([B, T], each row starting with one record: pack mode), its [T] bool
        evidence mask (False beyond the record) and its prompt's token count; None for a row not known."""
        ids = input_ids.detach().cpu()  # [B, T]
        out: list[tuple[torch.Tensor, int] | None] = []
        for b in range(ids.shape[0]):
            hit = self.rows.get(tuple(ids[b, :KEY_TOKENS].tolist()))
            n = 0 if hit is None else min(len(hit[0]), ids.shape[1])
            # The whole record, not only its opening, must match.
            if hit is None or not torch.equal(ids[b, :n], hit[0][:n]):
                out.append(None)
                continue
            row = torch.zeros(ids.shape[1], dtype=torch.bool)  # [T]
            row[:n] = hit[1][:n]
            out.append((row, hit[2]))
        return out

    def mask_for(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """[B, T] bool for a batch of rows, each starting with one record (pack mode); None if none is known.

        A known row's tail beyond its record (padding) is False; an unknown row is all False.
        """
        rows = self.lookup(input_ids)
        if all(r is None for r in rows):
            return None
        out = torch.zeros(input_ids.shape, dtype=torch.bool)  # [B, T]
        for b, r in enumerate(rows):
            if r is not None:
                out[b] = r[0]
        return out.to(input_ids.device)


def install_evidence_hook(model: nn.Module, table: EvidenceTable) -> torch.utils.hooks.RemovableHandle:
    """Before each forward of `model` (lemo applied), set ``sparsity_state(model).evidence_mask`` to the
    rows' evidence ([B, T] bool) or None. Call it once the model is final (after LoRA and `lemo.apply`)."""
    state = sparsity_state(model)

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        state.evidence_mask = None if input_ids is None else table.mask_for(input_ids)

    return model.register_forward_pre_hook(hook, with_kwargs=True)


class KeptMeter:
    """How much of the evidence each sparse layer kept while training: a selector that finds what the loss
    depends on keeps evidence blocks more often than the other unlabelled blocks (random keeps both at the
    keep ratio). Per training forward of a known row, the shares are averaged over the sparse layers that
    selected in it; `summary` averages them over the forwards (one per step at batch 1).

    "Filler" blocks hold no evidence and no token past the prompt (the questions and answers, which label
    priority keeps in the sup form). The cost is a table lookup and a few small masks per step.
    """

    def __init__(self, table: EvidenceTable) -> None:
        self.table = table
        self.evidence: list[float] = []
        self.filler: list[float] = []
        self._rows: list[tuple[torch.Tensor, int] | None] = []
        self._before: dict[int, object] = {}
        # scorer="gradient" chooses in the backward pass, after the forward hook: the rows of the last forward and
        # the selections as that hook left them, settled at the next forward or at `summary`.
        self._pending: tuple[list, dict[int, object]] | None = None
        self._state: Any = None

    def install(self, model: nn.Module) -> list[torch.utils.hooks.RemovableHandle]:
        """Hooks on `model` (lemo applied, final: after LoRA) that record every training forward."""
        state = self._state = sparsity_state(model)

        def pre(module: nn.Module, args: tuple, kwargs: dict) -> None:
            self._settle()
            input_ids = kwargs.get("input_ids", args[0] if args else None)
            known = module.training and input_ids is not None
            self._rows = self.table.lookup(input_ids) if known else []
            # A layer that does not select in this forward keeps its last selection: count fresh ones only.
            self._before = dict(state.last)

        def post(_module: nn.Module, _args: tuple, _output: Any) -> None:
            fresh = self._fresh(self._before)
            self._record(fresh, state.config.block_size)
            self._pending = (self._rows, dict(state.last))

        return [
            model.register_forward_pre_hook(pre, with_kwargs=True),
            model.register_forward_hook(post),
        ]

    def _fresh(self, before: dict[int, object]) -> dict[int, Any]:
        return {k: v for k, v in self._state.last.items() if before.get(k) is not v}

    def _settle(self) -> None:
        """Record the selections made in the backward pass of the last forward (scorer="gradient")."""
        if self._pending is None:
            return
        rows, before = self._pending
        self._pending = None
        fresh = self._fresh(before)
        if fresh:
            current, self._rows = self._rows, rows
            self._record(fresh, self._state.config.block_size)
            self._rows = current

    def _record(self, selections: dict[int, Any], block: int) -> None:
        for b, row in enumerate(self._rows):
            if row is None or not selections:
                continue
            mask, n_prompt = row
            ev = blocks_with_any(mask, block)  # [nb]
            tail = torch.zeros_like(mask)  # [T]
            tail[n_prompt:] = True
            filler = ~(ev | blocks_with_any(tail, block))  # [nb]
            shares = []
            for sel in selections.values():
                if b >= len(sel.blocks):  # one segment per row is what pack mode gives; else skip the row
                    break
                kept = torch.zeros_like(ev)  # [nb]
                kept[torch.tensor(sel.blocks[b], dtype=torch.long)] = True
                shares.append((_share(kept, ev), _share(kept, filler)))
            if len(shares) == len(selections):
                self.evidence.append(sum(e for e, _ in shares) / len(shares))
                self.filler.append(sum(f for _, f in shares) / len(shares))

    def summary(self) -> dict[str, float]:
        """{"kept_evidence", "kept_filler": means over the recorded forwards, "forwards"}; {} if none."""
        self._settle()
        if not self.evidence:
            return {}
        n = len(self.evidence)
        return {"kept_evidence": sum(self.evidence) / n, "kept_filler": sum(self.filler) / n, "forwards": n}


def _share(kept: torch.Tensor, of: torch.Tensor) -> float:
    return float((kept & of).sum()) / max(1, int(of.sum()))
