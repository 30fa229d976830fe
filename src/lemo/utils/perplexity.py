"""Sliding-window perplexity of a causal LM over one long token sequence.

The method of the HF guide "Perplexity of fixed-length models"
(https://huggingface.co/docs/transformers/perplexity): windows of `context` tokens start every `stride`
tokens; the first window scores all its tokens, every later window scores only the tokens not scored before
(its last `stride`), so each scored token is predicted from up to `context - 1` tokens of history. With
stride < context every token except the first is scored exactly once.

One difference from the guide's code: it counts `valid_labels - 1` loss tokens in every window, but only the
first window loses a token to the label shift; here the count is taken after the shift, so the total NLL is
exact (it equals the sum of per-token NLLs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

IGNORE_INDEX = -100


@dataclass
class PerplexityResult:
    """Perplexity of one token sequence at one context length."""

    ppl: float
    """exp(nll); inf when nll is too large to exponentiate."""
    nll: float
    """Mean negative log-likelihood per scored token, in nats."""
    tokens: int
    """Number of scored tokens."""
    windows: int
    """Number of model forward passes."""
    context: int
    """Window length requested (the text itself is shorter when `truncated`)."""
    stride: int
    """Tokens between window starts."""
    truncated: bool = False
    """True when the text is shorter than the requested context, so it was scored as one shorter window."""


def perplexity(
    model: nn.Module,
    token_ids: torch.Tensor,
    context: int,
    stride: int | None = None,
    max_windows: int | None = None,
    progress: bool = False,
) -> PerplexityResult:
    """Sliding-window perplexity of `model` on `token_ids` ([N] or [1, N] int64).

    Args:
        model: a causal LM returning `.loss` (mean over labels != -100, shifted internally) for
            `model(input_ids=[1, L], labels=[1, L])`, as HF `*ForCausalLM` models do.
        token_ids: the evaluation text, already tokenized.
        context: window length in tokens (the context length being evaluated).
        stride: tokens between window starts; default `context // 2`. stride == context gives disjoint
            windows (the first token of each is then never scored).
        max_windows: stop after this many windows (a quick estimate on a long text).
        progress: show a tqdm bar over windows.

    The model runs in eval mode under `torch.no_grad` and goes back to its previous mode afterwards.
    """
    ids = token_ids.reshape(-1) if token_ids.dim() == 2 and token_ids.shape[0] == 1 else token_ids
    if ids.dim() != 1:
        raise ValueError(f"token_ids has shape {tuple(token_ids.shape)}; pass one sequence, [N] or [1, N].")
    n = ids.numel()
    if n < 2:
        raise ValueError(
            f"the text has {n} token(s); perplexity needs at least 2 tokens, so pass a longer text."
        )
    if context < 2:
        raise ValueError(f"context={context} must be >= 2 tokens.")
    stride = context // 2 if stride is None else stride
    if not 1 <= stride <= context:
        raise ValueError(f"stride={stride} must be between 1 and context={context}.")
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"max_windows={max_windows} must be >= 1 (or None for the whole text).")
    truncated = n < context
    window = n if truncated else context  # a text shorter than the context is one window over all of it

    starts = list(range(0, n, stride))
    # The last useful window is the first that reaches the end; later starts would score nothing.
    starts = starts[: next(i for i, b in enumerate(starts) if b + window >= n) + 1]
    if max_windows is not None:
        starts = starts[:max_windows]

    device = _device_of(model)
    was_training = model.training
    model.eval()
    nll_sum, scored, prev_end = 0.0, 0, 0
    try:
        with torch.no_grad():
            for begin in tqdm(starts, desc=f"ppl@{context}", unit="window", disable=not progress):
                end = min(begin + window, n)
                input_ids = ids[begin:end].unsqueeze(0).to(device)  # [1, L]
                labels = input_ids.clone()  # [1, L]
                labels[:, : (end - begin) - (end - prev_end)] = IGNORE_INDEX  # score only the new tokens
                count = int((labels[:, 1:] != IGNORE_INDEX).sum())  # what the model's shifted mean divides by
                loss = model(input_ids=input_ids, labels=labels).loss
                nll_sum += float(loss.float()) * count
                scored += count
                prev_end = end
    finally:
        model.train(was_training)

    nll = nll_sum / scored
    try:
        ppl = math.exp(nll)
    except OverflowError:
        ppl = math.inf
    return PerplexityResult(ppl, nll, scored, len(starts), context, stride, truncated)


def perplexity_at_lengths(
    model: nn.Module, token_ids: torch.Tensor, lengths: list[int], **kw: Any
) -> list[PerplexityResult]:
    """`perplexity` at each context length in `lengths` (e.g. [4096, 8192, 16384]); kwargs pass through.

    `stride` defaults to half of each length, so every length scores (almost) the same tokens.
    """
    return [perplexity(model, token_ids, context=length, **kw) for length in lengths]


def _device_of(model: nn.Module) -> torch.device:
    # Models sharded with device_map keep their input embeddings on the first device: inputs go there.
    get_emb = getattr(model, "get_input_embeddings", None)
    emb = get_emb() if callable(get_emb) else None
    for module in (emb, model):
        if isinstance(module, nn.Module):
            param = next(module.parameters(), None)
            if param is not None:
                return param.device
    return torch.device("cpu")
