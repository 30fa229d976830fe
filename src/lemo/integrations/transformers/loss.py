"""The segmented LM-head + loss as an instance `forward` of an HF CausalLM.

With `labels`, the decoder runs, and the loss is computed segment by segment from the final hidden states;
the returned output has `logits=None` (the point is never to hold them). Without labels, the model's own
forward runs unchanged, so generation and logit inspection behave as usual.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import CausalLMOutputWithPast

from lemo.config import SparsityConfig
from lemo.ops import segmented_cross_entropy
from lemo.sparsity import SparsityState
from lemo.sparsity.supervision import copy_sources, query_mask, repeat_sources

log = logging.getLogger(__name__)
_FUSED_NOTED = False  # the one-time note that TRL's fused LM head scores the loss


def cache_kwargs(past_key_values: Any) -> dict[str, Any]:
    """Pass a KV cache on only when there is one: transformers >= 5.2x renamed `past_key_values` to `cache` and
    warns on every call that names the old one, even as None (a cache the caller gave still goes through)."""
    return {} if past_key_values is None else {"past_key_values": past_key_values}


def _returned_cache(out: Any) -> dict[str, Any]:
    """The decoder's KV cache under the field name this transformers uses (`cache` from 5.2x, else the old one).
    Looked up by the output class's fields: asking a new version for the old name, even `in`, warns."""
    names = {f.name for f in dataclasses.fields(out)} if dataclasses.is_dataclass(out) else set()
    name = "cache" if "cache" in names else "past_key_values"
    value = getattr(out, name, None) if name in names else None
    return {} if value is None else {name: value}


def record_label_mask(
    state: SparsityState,
    shift_labels: torch.Tensor | None,
    training: bool,
    input_ids: torch.Tensor | None = None,
) -> None:
    """Tell the selection which positions predict a label this forward (used by `label_priority`), and which
    positions the "supervision" scorer reads (labels, or far-repeat positions in plain text)."""
    use = training and state.config.label_priority and shift_labels is not None
    state.label_mask = (shift_labels != -100) if use else None  # [B, T]
    queries = training and state.config.scorer == "supervision"
    state.query_mask, state.query_far = query_mask(shift_labels, input_ids) if queries else (None, False)
    state.copy_mask = None
    n = state.config.copy_ngram
    if training and n and shift_labels is not None and input_ids is not None:
        labelled = shift_labels != -100  # [B, T]
        if labelled.shape != input_ids.shape:
            return
        if float(labelled.float().mean()) < 0.5:  # prompt/completion: what the answers copy
            state.copy_mask = copy_sources(input_ids, labelled, n)  # [B, T]
            return
        if not state.config.copy_plain_text:  # it would drop the rows' ends (SparsityConfig.copy_plain_text)
            return
        # Plain text: the earlier occurrences of far repeats. Every block is labelled, so the label tier is every
        # block and would hide the copy tier behind it; dropped, the blocks it held are chosen as the rest are.
        state.copy_mask = repeat_sources(input_ids, n, copies=state.config.copy_repeats)  # [B, T]
        state.label_mask = None


def drops_eliminated(config: SparsityConfig) -> bool:
    """Whether the loss leaves out the positions the last sparse layer eliminated: only forward elimination
    approximates them (backward elimination runs every position through every layer)."""
    return config.loss_tokens == "kept" and config.elimination == "forward"


def make_label_forward(base: nn.Module, state: SparsityState):
    """The model's own forward (and loss), recording which positions carry a label first (label_priority
    without the segmented loss)."""
    own_forward = base.__dict__.get("forward") or type(base).forward.__get__(base)

    def forward(*args: Any, labels: torch.Tensor | None = None, **kwargs: Any) -> Any:
        shift = kwargs.get("shift_labels")
        if shift is None and labels is not None:
            shift = F.pad(labels, (0, 1), value=-100)[:, 1:]  # [B, T] position t predicts label t+1
        record_label_mask(state, shift, base.training, kwargs.get("input_ids", args[0] if args else None))
        return own_forward(*args, labels=labels, **kwargs)

    forward._lemo_forward = True  # lets the trainer glue tell whether a later patch wrapped ours
    return forward


def _accepts_fused_head(own_forward: Any) -> bool:
    # TRL's add_fused_lm_head wraps the class forward with functools.wraps: look at the wrapper, not the wrapped.
    return "fused_lm_head" in inspect.signature(own_forward, follow_wrapped=False).parameters


def _fused_head_forward(
    own_forward: Any,
    state: SparsityState | None,
    config: SparsityConfig,
    training: bool,
    labels: torch.Tensor,
    given_shift: torch.Tensor | None,
    num_items: Any,
    **kwargs: Any,
) -> Any:
    """TRL's `fused_lm_head=True` call: TRL's own chunked LM head computes per-token log-probs, entropy and
    accuracy (what SFTTrainer reads); lemo only drops the positions the last sparse layer eliminated from them
    (loss_tokens="kept"), since their hidden states skipped the later layers."""
    global _FUSED_NOTED
    if not _FUSED_NOTED:
        _FUSED_NOTED = True
        log.info("lemo: TRL's fused LM head computes the loss; lemo masks eliminated positions out of it.")
    if given_shift is not None:
        kwargs["shift_labels"] = given_shift
    if num_items is not None:
        kwargs["num_items_in_batch"] = num_items
    out = own_forward(labels=labels, fused_lm_head=True, **kwargs)
    if not (drops_eliminated(config) and state is not None and state.last and training):
        return out
    last = state.last[max(state.last)]
    kept = torch.zeros(labels.numel(), dtype=torch.bool, device=out.label_mask.device)  # [B*T]
    kept[last.rows.to(kept.device)] = True
    kept = kept.view_as(labels)  # [B, T]
    if given_shift is None:
        kept = kept[:, :-1]  # [B, T-1] TRL scores position t against label t+1 and drops the last position
    for name in ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1"):
        if out.get(name) is not None:
            out[name] = out[name].masked_fill(~kept, 0)  # same shape as label_mask
    out["label_mask"] = out.label_mask & kept
    denom = out.label_mask.sum().clamp(min=1) if num_items is None else num_items
    out["loss"] = -out.log_probs.sum() / denom  # TRL's reduction, over the kept positions only
    return out


def _kept_labels(state: SparsityState, shift_labels: torch.Tensor) -> torch.Tensor:
    """shift_labels [B, T] with the positions the last sparse layer eliminated set to -100: only kept positions'
    hidden states went through every layer."""
    last = state.last[max(state.last)]
    kept = torch.zeros(shift_labels.numel(), dtype=torch.bool, device=last.rows.device)  # [B*T]
    kept[last.rows] = True
    return shift_labels.masked_fill(~kept.view_as(shift_labels).to(shift_labels.device), -100)


def _segmented_loss(
    hidden: torch.Tensor,
    shift_labels: torch.Tensor,
    lm_head: nn.Linear,
    config: SparsityConfig,
    num_items: Any,
) -> torch.Tensor:
    """The LM head and cross-entropy over the labelled positions of hidden [B, T, d], segment by segment."""
    flat_h = hidden.reshape(-1, hidden.shape[-1])  # [B*T, d]
    flat_y = shift_labels.reshape(-1).to(hidden.device)  # [B*T]
    scored = flat_y != -100
    if not bool(scored.all()):
        # Rows without a label (padding, prompts, eliminated positions with loss_tokens="kept") never reach
        # the LM head: with a 128K vocabulary that head is a large share of the step.
        rows = scored.nonzero().squeeze(1)  # [N]
        flat_h, flat_y = flat_h[rows], flat_y[rows]
    if flat_y.numel() == 0:
        # Nothing left to score (loss_tokens="kept" eliminated every labelled position, or no labels at all):
        # a zero that is still part of the graph, so backward() and gradient accumulation keep working.
        log.warning("lemo: no labelled position in this batch was kept; its loss is 0 (see label_priority).")
        return hidden.sum() * 0.0
    return segmented_cross_entropy(
        flat_h,
        lm_head.weight,
        flat_y,
        chunk=config.loss_chunk,
        num_items=num_items,
        bias=lm_head.bias,
        backend=config.backend,
    )


def make_loss_forward(
    base: nn.Module, decoder: nn.Module, config: SparsityConfig, state: SparsityState | None = None
):
    own_forward = base.__dict__.get("forward") or type(base).forward.__get__(base)
    lm_head = base.get_output_embeddings()
    if type(lm_head) is not nn.Linear:
        log.warning(
            "lemo: the LM head is a %s, not a plain Linear (adapters on lm_head?); using the model's own loss.",
            type(lm_head).__name__,
        )
        return own_forward
    fused_ok = _accepts_fused_head(own_forward)

    def forward(
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast:
        inputs = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            **cache_kwargs(past_key_values),
        )
        if labels is None:
            if state is not None:
                state.loss_rows = None
            return own_forward(**inputs, logits_to_keep=logits_to_keep, **kwargs)
        given_shift = shift_labels = kwargs.pop("shift_labels", None)
        num_items = kwargs.pop("num_items_in_batch", None)
        fused = kwargs.pop("fused_lm_head", False)
        if shift_labels is None:
            # Same shift as HF's ForCausalLMLoss: position t predicts label t+1; the last position predicts nothing.
            shift_labels = F.pad(labels, (0, 1), value=-100)[:, 1:]  # [B, T]
        if state is not None:
            record_label_mask(state, shift_labels, base.training, input_ids)
            # TRL's fused head, too, reads the last layer only at the labelled positions (its log-probs, entropy
            # and accuracy; lemo masks the eliminated ones out of them), so the last layer can be trimmed for it.
            trim = base.training and config.trim_last_layer
            state.loss_rows = (shift_labels != -100) if trim else None  # [B, T]
        inputs = dict(**inputs, **kwargs)  # the caller's other keys, once lemo's own are popped
        if fused:
            if not fused_ok:
                raise ValueError(
                    "fused_lm_head=True but this model has no fused LM head: it comes from TRL's SFTTrainer "
                    "(trl.trainer.utils.add_fused_lm_head); drop the flag or build the trainer first."
                )
            return _fused_head_forward(
                own_forward, state, config, base.training, labels, given_shift, num_items, **inputs
            )
        out = decoder(**inputs)
        hidden = out.last_hidden_state  # [B, T, d]
        if drops_eliminated(config) and state is not None and state.last and base.training:
            shift_labels = _kept_labels(state, shift_labels)
        loss = _segmented_loss(hidden, shift_labels, lm_head, config, num_items)
        return CausalLMOutputWithPast(
            loss=loss,
            logits=None,
            **_returned_cache(out),
            hidden_states=getattr(out, "hidden_states", None),
            attentions=getattr(out, "attentions", None),
        )

    forward._lemo_forward = True  # lets the trainer glue tell whether a later patch wrapped ours
    return forward
