"""Score a causal LM on the synthetic tasks (`lemo.eval.tasks`) by exact match, teacher-forced and greedy.

- teacher: one forward over prompt + answer; correct iff the argmax at every answer position is the answer
  token. Also gives per-token accuracy.
- greedy: decode len(answer_ids) tokens greedily from the prompt (KV cache); correct iff they are the answer
  ids. With identical numerics the two agree (greedy fails at the first token the argmax gets wrong), so a
  gap between them measures the cached path's numerics, e.g. bf16 or a broken cache.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lemo.config.eval import MODES
from lemo.eval.capability_result import CapabilityResult, CapabilityRow, SampleOutcome
from lemo.eval.filler import Filler
from lemo.eval.perplexity import _device_of
from lemo.eval.tasks import TaskSample, check_task, make_samples

__all__ = [
    "MODES",
    "CapabilityResult",
    "Score",
    "evaluate_capability",
    "score_greedy",
    "score_samples",
    "score_teacher",
]


@dataclass
class Score:
    correct: bool
    token_accuracy: float
    predicted: list[int]
    """Token ids the model put on top at the answer positions (teacher) or generated (greedy)."""


def _forward_params(model: nn.Module) -> set[str]:
    # A PEFT wrapper's forward takes **kwargs and hands them to the base model: read the base model's.
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    try:
        return set(inspect.signature(base.forward).parameters)
    except (TypeError, ValueError):
        return set()


def _keep_kwargs(model: nn.Module, n: int) -> dict[str, int]:
    """`logits_to_keep=n` where the model's forward takes it: at 64K tokens the full [1, T, V] logits would
    be the largest tensor of the run (32 GB for a 128K vocabulary), and only the last positions are used."""
    return {"logits_to_keep": n} if "logits_to_keep" in _forward_params(model) else {}


def _cache_of(out: Any) -> Any:
    # transformers renamed the KV cache `past_key_values` -> `cache` (5.2x); read whichever the output has.
    for name in ("cache", "past_key_values"):
        value = out.get(name) if isinstance(out, Mapping) else getattr(out, name, None)
        if value is not None:
            return value
    return None


def _cache_name(model: nn.Module) -> str:
    return "cache" if "cache" in _forward_params(model) else "past_key_values"


def score_teacher(model: nn.Module, sample: TaskSample, device: torch.device) -> Score:
    """Teacher-forced exact match of `sample.answer_ids` after `sample.prompt_ids` (call under no_grad)."""
    k = len(sample.answer_ids)
    ids = torch.tensor([sample.prompt_ids + sample.answer_ids], device=device)  # [1, T]
    logits = model(input_ids=ids, **_keep_kwargs(model, k + 1)).logits  # [1, T or k+1, V]
    pred = logits[0, -(k + 1) : -1].argmax(-1)  # [k]: position t predicts token t+1
    target = ids[0, -k:]  # [k]
    hits = pred == target  # [k]
    return Score(bool(hits.all()), float(hits.float().mean()), pred.tolist())


def score_greedy(model: nn.Module, sample: TaskSample, device: torch.device) -> Score:
    """Greedy decoding of len(answer_ids) tokens with the KV cache (call under no_grad).

    A model that returns no KV cache gets the whole sequence again at every step.
    """
    k = len(sample.answer_ids)
    seq = torch.tensor([sample.prompt_ids], device=device)  # [1, P]
    out = model(input_ids=seq, use_cache=True, **_keep_kwargs(model, 1))
    generated: list[int] = []
    for step in range(k):
        nxt = out.logits[0, -1].argmax(-1)  # [] greedy: the top token
        generated.append(int(nxt))
        if step == k - 1:
            break
        cache = _cache_of(out)
        if cache is not None:
            out = model(input_ids=nxt.view(1, 1), use_cache=True, **{_cache_name(model): cache})  # [1, 1]
        else:
            seq = torch.cat([seq, nxt.view(1, 1)], dim=1)  # [1, P + step + 1]
            out = model(input_ids=seq, use_cache=True, **_keep_kwargs(model, 1))
    hits = [g == a for g, a in zip(generated, sample.answer_ids)]
    return Score(all(hits), sum(hits) / k, generated)


def check_modes(modes: Sequence[str]) -> None:
    if not modes or any(m not in MODES for m in modes):
        raise ValueError(f"--modes {' '.join(modes)}: use one or both of {', '.join(MODES)}.")


def score_samples(
    model: nn.Module,
    tokenizer: Any,
    samples: Sequence[TaskSample],
    modes: Sequence[str] = MODES,
    progress: bool = True,
) -> CapabilityResult:
    """Score `samples` in every mode; one row per (task, length, depth, mode). The model runs in eval mode
    under no_grad and goes back to its previous mode afterwards."""
    check_modes(modes)
    device = _device_of(model)
    was_training = model.training
    model.eval()
    outcomes: list[SampleOutcome] = []
    try:
        with torch.no_grad():
            for s in tqdm(samples, desc="capability", unit="sample", disable=not progress):
                for mode in modes:
                    score = (score_teacher if mode == "teacher" else score_greedy)(model, s, device)
                    outcomes.append(
                        SampleOutcome(
                            task=s.task,
                            length=s.length,
                            depth=s.depth,
                            mode=mode,
                            key=s.key,
                            correct=score.correct,
                            token_accuracy=score.token_accuracy,
                            answer=s.answer,
                            predicted=tokenizer.decode(score.predicted),
                            hits=[p == a for p, a in zip(score.predicted, s.answer_ids)],
                        )
                    )
    finally:
        model.train(was_training)
    return CapabilityResult(_rows(outcomes), outcomes)


def _rows(outcomes: list[SampleOutcome]) -> list[CapabilityRow]:
    cells: dict[tuple[str, int, float, str], list[SampleOutcome]] = {}
    for o in outcomes:
        cells.setdefault((o.task, o.length, o.depth, o.mode), []).append(o)
    rows = []
    for (task, length, depth, mode), group in cells.items():
        n = len(group)
        tok = sum(o.token_accuracy for o in group) / n if mode == "teacher" else None
        rows.append(CapabilityRow(task, length, depth, mode, sum(o.correct for o in group) / n, n, tok))
    return rows


def evaluate_capability(
    model: nn.Module,
    tokenizer: Any,
    task: str,
    filler_text: str | Sequence[str] | Filler,
    lengths: Sequence[int],
    depths: Sequence[float],
    samples_per_cell: int,
    seed: int = 0,
    n_keys: int = 16,
    modes: Sequence[str] = MODES,
    progress: bool = True,
    n_values: int = 4,
    n_hops: int = 4,
    n_chains: int = 1,
) -> CapabilityResult:
    """Exact-match accuracy of `model` on `task` at every (length, depth), eval name pool.

    Args:
        filler_text: the context text (a string, several strings, or a prepared `Filler`); tokenized once.
        lengths: total tokens of prompt + answer, e.g. [4096, 8192].
        depths: relative positions of the queried needle, each in [0, 1].
        samples_per_cell: samples per (length, depth); each is seeded from (seed, task, length, depth, index).
        n_keys / n_values / n_hops / n_chains: see `lemo.eval.tasks.make_sample`.
        modes: "teacher" and/or "greedy".
    """
    check_task(task)
    check_modes(modes)
    if samples_per_cell < 1:
        raise ValueError(f"--samples {samples_per_cell} must be >= 1.")
    filler = filler_text if isinstance(filler_text, Filler) else Filler.from_texts(filler_text, tokenizer)
    samples = make_samples(
        task,
        filler,
        tokenizer,
        lengths,
        depths,
        samples_per_cell,
        seed=seed,
        split="eval",
        n_keys=n_keys,
        n_values=n_values,
        n_hops=n_hops,
        n_chains=n_chains,
    )
    return score_samples(model, tokenizer, samples, modes, progress)
