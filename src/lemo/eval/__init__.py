"""Evaluation: sliding-window perplexity, and capability on synthetic long-context tasks."""

from lemo.config.eval import TASKS
from lemo.eval.capability import evaluate_capability, score_greedy, score_samples, score_teacher
from lemo.eval.capability_result import CapabilityResult, CapabilityRow, SampleOutcome
from lemo.eval.filler import Filler
from lemo.eval.perplexity import PerplexityResult, perplexity, perplexity_at_lengths
from lemo.eval.tasks import TaskSample, make_sample, make_samples, training_records

__all__ = [
    "TASKS",
    "CapabilityResult",
    "CapabilityRow",
    "Filler",
    "PerplexityResult",
    "SampleOutcome",
    "TaskSample",
    "evaluate_capability",
    "make_sample",
    "make_samples",
    "perplexity",
    "perplexity_at_lengths",
    "score_greedy",
    "score_samples",
    "score_teacher",
    "training_records",
]
