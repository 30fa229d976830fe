"""Hugging Face side of predictor calibration: model identity, normed layer inputs, tokenised chunks.

`lemo.predictor` never imports transformers; this module implements its `CalibrationModel` protocol for HF
causal LMs (plain or PEFT-wrapped) and holds the user-facing functions, which take texts. `calibrate` is
calibration's one entry point (`lemo.calibrate`; `lemo calibrate` runs it on a loaded model too):

    preds = calibrate(model, texts, tokenizer)            # -> PredictorSet (preds.report: CalibrationReport)
    preds.save(dir); preds = load_predictors(dir, model)  # refuses predictors made for another model
    result = choose_keep_ratios(model, texts, tokenizer, target=0.5)   # budgeted per-layer keep ratios
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lemo.config import PredictorTrainingConfig, SparsityConfig
from lemo.integrations.transformers.archs import layer_parts, spec_for
from lemo.integrations.transformers.patch import causal_lm
from lemo.predictor.calibrate import train_predictors
from lemo.predictor.identity import ModelIdentity, weight_fingerprint
from lemo.predictor.model import PredictorSet, load_predictor_set
from lemo.sparsity.budget import DEFAULT_GRID, BudgetResult
from lemo.sparsity.budget import choose_keep_ratios as _choose_keep_ratios
from lemo.sparsity.parts import LayerParts

Texts = str | Sequence[str] | Sequence[torch.Tensor] | Sequence[Sequence[int]]


class _Stop(Exception):
    """Raised by the last needed hook: layers above the last sparse one are not needed for calibration."""


def _decoder_layers(base: nn.Module) -> tuple[nn.Module, Any]:
    spec = spec_for(base.config.model_type)
    decoder = getattr(base, spec.decoder)
    return decoder, getattr(decoder, spec.layers)


def _q_weight(layer: nn.Module, spec: Any) -> torch.Tensor | None:
    q = getattr(getattr(layer, spec.attn), spec.q_proj)
    q = getattr(q, "base_layer", q)  # PEFT wraps the original Linear as base_layer
    w = getattr(q, "weight", None)
    return w if isinstance(w, torch.Tensor) else None


def model_identity(model: nn.Module) -> ModelIdentity:
    """The `ModelIdentity` of an HF causal LM (plain or PEFT-wrapped)."""
    base = causal_lm(model)
    cfg = base.config
    spec = spec_for(cfg.model_type)
    _, layers = _decoder_layers(base)
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    w = _q_weight(layers[0], spec) if len(layers) else None
    return ModelIdentity(
        model_type=cfg.model_type,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_hidden_layers,
        num_heads=heads,
        num_kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        vocab_size=cfg.vocab_size,
        name=str(getattr(cfg, "name_or_path", "") or ""),
        fingerprint=weight_fingerprint(w) if w is not None else {},
    )


class HFCalibrationModel:
    """`lemo.predictor.CalibrationModel` (and so the budget search's `lemo.sparsity.budget.DenseModel`) for an HF
    causal LM: frozen, dense, batch of one."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.base = causal_lm(model)
        self.spec = spec_for(self.base.config.model_type)
        self.decoder, self.layers = _decoder_layers(self.base)
        self.num_layers = len(self.layers)
        self.device = next(self.base.parameters()).device
        self.dtype = next(self.base.parameters()).dtype

    def identity(self) -> ModelIdentity:
        return model_identity(self.model)

    def layer_parts(self, index: int) -> LayerParts:
        return layer_parts(self.layers[index], self.spec, index, self.base.config)

    @torch.no_grad()
    def normed_inputs(self, input_ids: torch.Tensor, layers: Sequence[int]) -> dict[int, torch.Tensor]:
        """{layer: input_layernorm output [T, d]} of one dense forward on input_ids [T]."""
        wanted = sorted(set(layers))
        if not wanted:
            return {}
        out: dict[int, torch.Tensor] = {}
        handles = []

        def hook_for(i: int):
            def hook(_m: nn.Module, _args: Any, output: torch.Tensor) -> None:
                out[i] = output[0].detach()  # [T, d] (batch of one)
                if i == wanted[-1]:
                    raise _Stop

            return hook

        for i in wanted:
            norm = getattr(self.layers[i], self.spec.input_norm)
            handles.append(norm.register_forward_hook(hook_for(i)))
        was_training = self.model.training
        # eval(): no dropout, and a lemo-patched model runs its layers dense: calibration sees dense states.
        self.model.eval()
        try:
            self.model(input_ids=input_ids.reshape(1, -1).to(self.device), use_cache=False)
        except _Stop:
            pass
        finally:
            for h in handles:
                h.remove()
            self.model.train(was_training)
        missing = [i for i in wanted if i not in out]
        if missing:
            raise RuntimeError(
                f"layers {missing} did not run their input_layernorm; is the model's layer stack patched?"
            )
        return out

    @torch.no_grad()
    def rotary(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin [length, head_dim] from the model's own rotary embedding (any RoPE scaling included)."""
        rotary = getattr(self.decoder, "rotary_emb", None)
        if rotary is None:
            raise RuntimeError(
                f"{type(self.decoder).__name__} has no rotary_emb; damage measurement needs a RoPE model."
            )
        pos = torch.arange(length, device=self.device)[None]  # [1, T]
        probe = torch.zeros(1, length, 1, device=self.device, dtype=self.dtype)  # only dtype/device are read
        cos, sin = rotary(probe, pos)  # [1, T, D] each
        return cos[0], sin[0]


def _tokenizer_for(model: nn.Module, tokenizer: Any) -> Any:
    if tokenizer is not None:
        return tokenizer
    path = getattr(causal_lm(model).config, "name_or_path", "")
    if path and Path(path).is_dir():
        from transformers import AutoTokenizer  # heavy; needed only for raw text

        return AutoTokenizer.from_pretrained(path)
    raise ValueError(
        "texts are strings but no tokenizer was given and the model's directory has none; pass tokenizer= "
        "(e.g. AutoTokenizer.from_pretrained(model_dir)) or pre-tokenised chunks."
    )


def token_chunks(
    texts: Texts,
    tokenizer: Any,
    seq_len: int,
    *,
    max_chunks: int | None = None,
    model: nn.Module | None = None,
) -> list[torch.Tensor]:
    """Cut each text into chunks of `seq_len` token ids ([seq_len] int64 each), not crossing texts.

    A text shorter than `seq_len` gives one shorter chunk (if at least one block of 64 tokens long) so that
    small inputs still calibrate; longer texts drop their incomplete tail. Token tensors/lists pass through
    (cut the same way).
    """
    if isinstance(texts, str):
        texts = [texts]
    chunks: list[torch.Tensor] = []
    for t in texts:
        if isinstance(t, str):
            tok = _tokenizer_for(model, tokenizer) if tokenizer is None and model is not None else tokenizer
            if tok is None:
                raise ValueError("texts are strings: pass tokenizer= to cut them into token chunks.")
            ids = torch.tensor(tok(t, add_special_tokens=False)["input_ids"], dtype=torch.long)  # [n]
            tokenizer = tok
        else:
            ids = torch.as_tensor(t, dtype=torch.long).reshape(-1)  # [n]
        if ids.numel() >= seq_len:
            chunks.extend(ids[: ids.numel() // seq_len * seq_len].view(-1, seq_len).unbind(0))
        elif ids.numel() >= 64:
            chunks.append(ids)
        if max_chunks is not None and len(chunks) >= max_chunks:
            return chunks[:max_chunks]
    return chunks


def calibrate(
    model: nn.Module,
    texts: Texts,
    tokenizer: Any = None,
    *,
    sparsity: SparsityConfig | None = None,
    config: PredictorTrainingConfig | None = None,
    holdout: Texts | None = None,
    output_dir: str | Path | None = None,
) -> PredictorSet:
    """Train block-score predictors for `model`'s sparse layers on `texts`: `lemo.calibrate`, the entry point of
    calibration (it tokenises, freezes the model and runs `lemo.predictor.train_predictors`).

    Args:
        model: HF causal LM (plain or PEFT); frozen here, left in its original train/eval mode.
        texts: strings (tokenised with `tokenizer`, or the model directory's tokenizer) or token id sequences.
        sparsity: sparse layers, block size, keep ratios for the reported recall (default SparsityConfig()).
        config: training settings (`PredictorTrainingConfig`); `seq_len` sets the chunk length.
        holdout: texts never trained on, for the recall in the report (recommended).
        output_dir: write predictors, calibration.json and PNG plots there.

    Returns:
        The `PredictorSet`; `.report` holds the `CalibrationReport`; `.save(dir)` writes it.

    Example::

        preds = calibrate(model, [open("book.txt").read()], tok, config=PredictorTrainingConfig(steps=200))
        lemo.apply(model, SparsityConfig(scorer="predictor", random_fraction=0.0), predictors=preds)
    """
    cfg = config or PredictorTrainingConfig()
    chunks = token_chunks(texts, tokenizer, cfg.seq_len, max_chunks=cfg.max_chunks, model=model)
    if not chunks:
        raise ValueError(
            f"the texts give no chunk of at least 64 tokens at --seq-len {cfg.seq_len}; pass more text."
        )
    held = (
        token_chunks(holdout, tokenizer, cfg.seq_len, max_chunks=8, model=model)
        if holdout is not None
        else []
    )
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)  # the model is frozen: no gradient buffers for its weights
    try:
        return train_predictors(
            HFCalibrationModel(model),
            chunks,
            sparsity=sparsity,
            config=cfg,
            holdout=held,
            output_dir=output_dir,
        )
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)


def load_predictors(
    directory: str | Path, model: nn.Module | ModelIdentity | None = None, *, strict: bool = True
) -> PredictorSet:
    """Load predictors saved by `lemo calibrate`; with `model`, refuse predictors made for another model."""
    identity = model_identity(model) if isinstance(model, nn.Module) else model
    device = next(causal_lm(model).parameters()).device if isinstance(model, nn.Module) else None
    return load_predictor_set(directory, identity, strict=strict, device=device)


def choose_keep_ratios(
    model: nn.Module,
    texts: Texts,
    tokenizer: Any = None,
    *,
    target: float,
    sparsity: SparsityConfig | None = None,
    seq_len: int = 4096,
    max_chunks: int = 4,
    grid: Sequence[float] = DEFAULT_GRID,
    predictors: PredictorSet | None = None,
    progress: bool = False,
) -> BudgetResult:
    """Per-layer keep ratios with mean kept-token fraction <= `target`, least damage on held-out `texts`.

    With `predictors`, blocks are chosen by them (the damage fine-tuning will see); else by the oracle.
    `result.write_yaml("run.yaml")` writes them into a `lemo finetune` config.
    """
    chunks = token_chunks(texts, tokenizer, seq_len, max_chunks=max_chunks, model=model)
    if not chunks:
        raise ValueError(f"the held-out texts give no chunk at --seq-len {seq_len}; pass more text.")
    return _choose_keep_ratios(
        HFCalibrationModel(model),
        chunks,
        target,
        sparsity=sparsity,
        grid=grid,
        scorer=predictors.as_scorer() if predictors is not None else None,  # None: the oracle
        progress=progress,
    )
