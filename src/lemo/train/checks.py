"""What `lemo finetune` checks before any weight loads, so a mistake costs a second, not a model load.

In order: the config alone (`check_config`), the model's config.json (`check_model`), then the data, read and
tokenized with the tokenizer only (`load_run_data`). Loading the weights took 5-7 s on a laptop for the 135M
model before any of these errors could appear.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lemo.assets import austen_texts
from lemo.config import FinetuneConfig
from lemo.integrations.transformers.archs import spec_for
from lemo.integrations.transformers.loading import rope_scaled_config
from lemo.sparsity.state import SparsityState
from lemo.train.data import (
    Example,
    Record,
    TextRecord,
    build_examples,
    load_documents,
    load_records,
    tokenize_documents,
    tokenize_records,
)
from lemo.train.run_safety import warn_on_useless_lengths

log = logging.getLogger(__name__)


def eliminates(cfg: FinetuneConfig) -> bool:
    """Whether the run asks for token elimination in at least one layer."""
    return cfg.sparse and cfg.sparsity.sparse_layers not in ("none", [])


def check_config(cfg: FinetuneConfig) -> None:
    """Refusals and warnings that the config alone decides."""
    check_seq_len(cfg)
    warn_on_short_warmup(cfg)
    if cfg.sparse and cfg.sparsity.scorer == "predictor" and not cfg.predictors:
        raise ValueError("--scorer predictor needs --predictors DIR (made by `lemo calibrate`).")


def check_seq_len(cfg: FinetuneConfig) -> None:
    """Refuse rows too short for elimination to drop a block; they used to train dense while the run said
    "token elimination on"."""
    s = cfg.sparsity
    always = s.sink_blocks + s.local_blocks
    blocks = cfg.seq_len // s.block_size
    if eliminates(cfg) and blocks <= always:
        raise ValueError(
            f"--seq-len {cfg.seq_len} gives {blocks} block{'s' if blocks != 1 else ''} of {s.block_size} tokens, "
            f"but token elimination always keeps the first {s.sink_blocks} (sink) and last {s.local_blocks} "
            f"(local) blocks of a row, so it would eliminate nothing; use --seq-len >= "
            f"{(always + 1) * s.block_size} for token elimination, or --no-sparse to train without it."
        )


def warn_on_short_warmup(cfg: FinetuneConfig) -> None:
    """Warm-up ramps the learning rate from 0 (step k trains at k / warmup_steps of --lr), so a run of no more
    steps than the warm-up never trains at the learning rate it was given."""
    warmup, steps = cfg.warmup_steps, cfg.steps
    if warmup > 0 and steps <= warmup:
        log.warning(
            "warning: --warmup-steps %d ramps the learning rate up from 0 over %d steps, but the run has only "
            "--steps %d, so it never reaches --lr %g (its last step trains at %d%% of it); use --warmup-steps N "
            "with N below --steps, e.g. --warmup-steps 0 for a run this short.",
            warmup, warmup, steps, cfg.lr, round(100 * (steps - 1) / warmup),
        )  # fmt: skip


def check_model(cfg: FinetuneConfig, model_dir: Path) -> None:
    """What config.json alone settles: a supported architecture, sparse layers and keep ratios that fit its
    layer count, LoRA targets that name its modules, and lengths within its positions (a warning)."""
    config = rope_scaled_config(model_dir, cfg.rope_scaling, cfg.rope_factor)
    if cfg.sparse:
        spec_for(config.model_type)  # an unsupported architecture is said so before LoRA targets are checked
        SparsityState.from_config(cfg.sparsity, config.num_hidden_layers)  # refuses values that do not fit
    missing = [t for t in cfg.lora.targets if t not in _module_names(config)]
    if missing:
        raise ValueError(
            f"--lora-targets {missing} name no module of this model; e.g. q_proj,k_proj,v_proj,o_proj."
        )
    warn_on_useless_lengths(cfg, getattr(config, "max_position_embeddings", None))


def _module_names(config: Any) -> set[str]:
    """The last name part of every module, from the model built on the meta device (no memory, no weights)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}


@dataclass
class RunData:
    examples: list[Example]
    held_ids: torch.Tensor | None  # [N] held-out token ids for perplexity; None without held-out text
    source: str  # where the training text came from, for the run's first line


def load_run_data(cfg: FinetuneConfig, model_dir: Path, world_size: int) -> RunData:
    """Read and tokenize the data with the tokenizer alone, and check there are enough rows for one step."""
    from transformers import AutoTokenizer

    train_records, held_docs, source = _documents(
        cfg
    )  # a missing or malformed file fails before the tokenizer
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    # Labels come with the tokens: every token for text, only completions and assistant turns otherwise.
    token_records = tokenize_records(train_records, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    examples = build_examples(token_records, cfg.seq_len, cfg.data_mode, cfg.sparsity.block_size, pad_id)
    held_ids = None
    if held_docs:
        held_ids = torch.tensor(
            [t for d in tokenize_documents(held_docs, tokenizer) for t in d], dtype=torch.long
        )
    rows = cfg.batch_size * cfg.grad_accum  # one rank's rows per step
    if rows * world_size > len(examples):
        ranks = f" x {world_size} ranks" if world_size > 1 else ""
        raise ValueError(
            f"--batch-size {cfg.batch_size} x --grad-accum {cfg.grad_accum}{ranks} = {rows * world_size} rows "
            f"per step, but the data gives only {len(examples)} rows of {cfg.seq_len} tokens; lower them or add text."
        )
    return RunData(examples, held_ids, source)


def _documents(cfg: FinetuneConfig) -> tuple[list[Record], list[str], str]:
    """Training records (text, prompt/completion or chat), held-out plain texts, and where they came from.

    The held-out texts only feed perplexity, so supervised records there count as plain text
    (prompt + completion; see `load_documents`).
    """
    if cfg.data:
        train = load_records(cfg.data)
        held = load_documents(cfg.eval_data) if cfg.eval_data else []
        return train, held, "files"
    corpus = austen_texts()
    novels, held_name = corpus.split()
    train: list[Record] = [TextRecord(text, n) for n, text in novels.items()]
    held = load_documents(cfg.eval_data) if cfg.eval_data else [corpus.texts[held_name]]
    return train, held, corpus.source
