"""The sections of docs/results.md (`SECTIONS`), one per CSV, in the page's order, and the text under each group's
heading. The long lists live beside this file: speed (`sections_speed`), the suite's GPU runs (`sections_suite`)
and the CPU probes behind it (`sections_probes`)."""

from __future__ import annotations

from reporting.section import Section
from reporting.sections_probes import PROBE_SECTIONS
from reporting.sections_speed import E2E_ABOUT, SPEED_SECTIONS
from reporting.sections_suite import SUITE_SECTIONS

__all__ = ["E2E_ABOUT", "GROUPS", "SECTIONS", "Section"]

# A few lines under a group's heading, shared by its sections.
GROUPS = {
    "Speed and memory": E2E_ABOUT,
    "Quality and capability": (
        "Quality is measured on SmolLM2-135M-Instruct with real weights, on a GPU, with each adapter evaluated "
        "dense (without elimination). The retrieval tasks below are `lemo data`'s own, where dense LoRA comes close "
        "to saturating. The held-out capability suite ([suite.md](suite.md)) is the evidence that counts: see its "
        "v3 section below and the headline."
    ),
}


SECTIONS: list[Section] = [
    *SPEED_SECTIONS,
    Section(
        "Quality and capability",
        "Retrieval after fine-tuning, at equal steps and equal GPU time (SmolLM2-135M, 16K)",
        "capability_smollm2.csv",
        "SmolLM2-135M-Instruct extended from 8K to 16K with YaRN, LoRA r=8 on q/k/v/o, 16K-token rows with facts "
        "and their answered questions. `sup` rows train on the answers only (prompt/completion), `text` rows on "
        "every position. GPU time counts each config's steps at its measured step-time ratio to `exact`, so "
        "`dense@48` has about the GPU time of 60 lemo steps. The tasks are `lemo data`'s own, with eval names and a "
        "novel never trained on. `prio-random` was the default (until 2026-12-05), `preset` the one before, `random` the default "
        "without label priority. Details: [capability.md](capability.md).",
        ("capability_smollm2_frontier.png",),
    ),
    Section(
        "Quality and capability",
        "Which blocks each selection keeps",
        "selection_bias.csv",
        "The share of (block, sparse layer) pairs kept, by region of the row and by position.",
    ),
    Section(
        "Quality and capability",
        "Held-out perplexity after fine-tuning (SmolLM2-135M, 16K)",
        "quality_smollm2_shared.csv",
        "Extended from 8K to 16K with YaRN, 50 steps at 16K on five Austen novels, dense perplexity on the sixth. "
        "The run log with the earlier settings: [quality.md](quality.md).",
    ),
    Section(
        "Quality and capability",
        "Learned predictors and LongLoRA (held-out perplexity)",
        "quality_smollm2_pred.csv",
        "Same protocol; `pred=` rows choose the blocks with predictors calibrated on the GPU instead of the oracle.",
    ),
    *SUITE_SECTIONS,
    *PROBE_SECTIONS,
    Section(
        "Learned predictors",
        "Predictor recall against the oracle's choice",
        "predictor_recall_gpu.csv",
        "Held-out recall of the oracle's kept blocks, per predictor kind. Details: [predictors.md](predictors.md).",
        ("predictor_recall_gpu.png",),
    ),
    Section(
        "Learned predictors",
        "Predictor cost on the Llama-2-7B shape",
        "e2e_llama2_7b_predictors.csv",
        "The step with learned predictors choosing the blocks, against the same step with the exact scores.",
    ),
    Section(
        "Quick start on a CPU",
        "The README's quick start, timed",
        "quickstart_cpu.csv",
        "`make trial` builds a wheel, installs it in a fresh venv and runs the README's quick start as written, "
        "failing when it takes longer than 5 minutes.",
    ),
]
