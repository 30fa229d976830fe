"""The sections of docs/results.md (`SECTIONS`), one per CSV, and the text under each group's heading."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reporting.quality_tables import suite_own_length_table

# ---------------------------------------------------------------------------------------------------------------
# docs/results.md: one section per CSV, generated whole.


@dataclass(frozen=True)
class Section:
    """A section of docs/results.md: a heading, the setup in words, the table of one CSV, then its figures.

    `about` holds no measured number (those come from the table); `notes`, when given, reads the rows and
    may quote numbers, since it computes them."""

    group: str
    title: str
    csv: str
    about: str
    figures: tuple[str, ...] = ()
    notes: Callable[[list[dict[str, str]]], str] | None = None
    table: Callable[[list[dict[str, str]]], str] | None = (
        None  # default: chosen by the CSV's columns (`table`)
    )


E2E_ABOUT = (
    "LoRA r=8 on q/k/v/o, bf16, batch 1, one GPU, median of the timed steps after a warm-up step. Weights are "
    "random where the shape is a Llama (memory and time do not depend on their values). `exact` is the strongest "
    "exact stack built from public parts here: HF gradient checkpointing, SDPA flash attention and a loss computed "
    "in segments. `lora` is plain LoRA, `+gc` means on top of `exact`, `+sgc` checkpoints only the sparse layers, "
    "`longlora` uses LongLoRA's shifted sparse attention. `lemo-shared` is shared selection with the loss on kept "
    "positions, `lemo-random` adds label priority and random blocks (the default until 2026-12-05)."
)


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


def _sweep_notes(rows: list[dict[str, str]]) -> str:
    ok = {(r["seq_len"], r["config"]): float(r["median_step_s"]) for r in rows if r.get("status") == "ok"}
    lengths = sorted({int(t) for t, c in ok if c == "lemo-shared+gc" and (t, "exact") in ok})
    ratios = ", ".join(
        f"{ok[(str(t), 'lemo-shared+gc')] / ok[(str(t), 'exact')]:.2f}x at {t // 1024}K" for t in lengths
    )
    return f"lemo on the exact stack takes {ratios} of the exact stack's step time.\n"


SECTIONS: list[Section] = [
    Section(
        "Speed and memory",
        "Llama-3-8B shape: step time and memory from 4K to 64K",
        "e2e_llama3_8b_sweep.csv",
        "T doubles until a config runs out of memory on the 141 GB card.",
        ("e2e_llama3_8b_sweep_memory.png", "e2e_llama3_8b_sweep_step_time.png"),
        _sweep_notes,
    ),
    Section(
        "Speed and memory",
        "Llama-3-8B shape: against Liger-Kernel's exact stack",
        "e2e_llama3_8b_liger.csv",
        "`liger-exact` is the exact stack with Liger-Kernel's fused RoPE, RMSNorm, SwiGLU and linear cross-entropy "
        "(what TRL's `use_liger_kernel=True` gives); `liger-*` rows run lemo on top of it. `lemo-bwd` is backward "
        "elimination, `-sup` its supervision-aware selector, `-trim` the trimmed last layer, `default+gc` "
        "`SparsityConfig()` at the row's commit. The `completion` column is the labelled share of each row: 0.02 "
        "supervises its end, as prompt/completion data does; 0.0 (the H100 rows at 3380c6e, by mistake) is plain "
        "text, every position labelled.",
    ),
    Section(
        "Speed and memory",
        "Llama-3-8B shape: where a step's time goes (profiled)",
        "profile_llama3_8b.csv",
        "One warm step per config under `torch.profiler` (`benchmarks/e2e/profile_step.py`), 2% of the row "
        "labelled. Idle: the time the GPU ran no kernel between the step's first and last; gaps: its stretches of "
        "50 us or more. Host syncs: synchronizes, blocking copies and stream waits in the step. Op families are the kernels' device time: `attention` "
        "is PyTorch's SDPA, `lemo-attention` lemo's Triton kernels on kept rows, `liger` Liger's fused kernels, "
        "and `lemo::select` everything launched while lemo chose the kept blocks (its scoring included).",
    ),
    Section(
        "Speed and memory",
        "Llama-3-8B shape: what holds the memory at the peak",
        "profile_llama3_8b_peak.csv",
        "The same steps, one more time with the CUDA allocator's history on: the blocks the step allocated that are "
        "alive at its peak, summed by the innermost line of lemo, transformers, PEFT or Liger that allocated them "
        "(`lemo.bench.peak_owners`). The weights and what the step did not allocate are not in the history, so "
        "the share is of the step's own memory at its peak.",
    ),
    Section(
        "Speed and memory",
        "Llama-3-8B shape: backward elimination with its Triton kernel, against Liger exact",
        "e2e_llama3_8b_bwd_kernel.csv",
        "`liger-lemo-bwd-grad+gc` is backward elimination (the forward exact, the backward on 0.6 of the blocks) "
        "with the gradient scorer, on top of Liger; its kept queries' attention runs the Triton kernel of "
        "`ops/sparse_attention/triton_query.py`. Same run: Liger exact and lemo's default on Liger. Backward "
        "elimination is no faster than Liger exact; the default's 0.80x is the step-time ratio the suite's "
        "equal-GPU-time baseline (`dense@48`) is computed with.",
    ),
    Section(
        "Speed and memory",
        "Llama-3-8B shape: a dense step of the default (keep 1.0), for `dense_tail`",
        "e2e_llama3_8b_tail.csv",
        "`liger-default+gc` at keep 1.0 is the step that `SparsityConfig(dense_tail=...)` takes in its last steps "
        "(every block kept: the sparse layers' machinery over every row, the trimmed last layer and lemo's loss), "
        "beside Liger exact and the default at keep 0.5, in one H200 session right after the suite v7 run (commit "
        "81fe8bf, 2% labelled). A tail of 20% of the steps makes the mean step 0.8 x 0.705 + 0.2 x 0.987 = 0.761x "
        "Liger exact's at 16K and 0.733x at 32K (composed from these rows, as `plot_suite_frontier.py` does with "
        "`%0.2`). The dense step's GPU peak is 0.97x Liger exact's at 32K. Plain-text rows (completion 0) were not timed here.",
    ),
    Section(
        "Speed and memory",
        "Llama-3-8B shape: the copied-n-gram tier's step (2% labelled rows)",
        "e2e_llama3_8b_copy3.csv",
        "`liger-default-copy3+gc` is the default with `copy_ngram=3` (the copy tier: `supervision.copy_sources` "
        "over the batch's token ids each step), beside Liger exact and the default without it, at keep 0.5, in "
        "one H200 run at ef2a0ab, 2% of each row labelled as prompt/completion data. It became `SparsityConfig()` "
        "after this run, with the capability suite's `copy3` rows.",
    ),
    Section(
        "Speed and memory",
        "Llama-3-8B shape: the copied-n-gram tier's step (plain text)",
        "e2e_llama3_8b_copy3_text.csv",
        "The same three configs on plain-text rows (every position labelled; the tier is then "
        "`supervision.repeat_sources`), in the same H200 session right after the run above.",
    ),
    Section(
        "Speed and memory",
        "Llama-3-8B shape: a dense step of the default on plain text, for `dense_tail`",
        "e2e_llama3_8b_tail_text.csv",
        "`liger-default-copy3+gc` at keep 1.0 on plain-text rows: the step `dense_tail` takes there, beside Liger "
        "exact, in one H200 run at 3887b95. Composed with the copy tier's plain-text step above (0.693x at 32K), a 15% "
        "tail makes the mean plain-text step 0.85 x 0.693 + 0.15 x 1.019 = 0.742x Liger exact's at 32K and 0.768x "
        "at 16K; a 20% tail 0.758x and 0.783x. Without the tier (the default's plain text, 0.687x), a 20% tail "
        "makes it 0.753x at 32K.",
    ),
    Section(
        "Speed and memory",
        "Llama-3-8B shape: the plain-text perplexity setting with offload",
        "e2e_llama3_8b_tail_offload_text.csv",
        "The steps of `--copy-plain-text --dense-tail 0.15` on plain-text rows (completion 0), with and without "
        "`--offload cpu`, beside Liger exact, in one H100 session at 7b5ef1a (16K, then 32K, each one model build): "
        "`liger-default-copy3+gc` and `+offload` are its sparse steps (keep 0.5), `-tail+gc` and `-tail+offload` its "
        "dense-tail steps (keep 1.0). Offload is exact, so the tail's quality is the dense tail's (1.0097x dense "
        "LoRA's perplexity on suite v7). At 32K a 15% tail without offload is 0.85 x 0.696 + 0.15 x 1.028 = 0.746x "
        "Liger exact's step at a peak of 0.97x (the tail's 28.1 GiB); with offload 0.85 x 0.728 + 0.15 x 1.068 = "
        "0.779x at a peak of 0.73x (21.1 GiB), under the default's 0.83x (24.2 GiB). At 16K: 0.770x and 0.811x.",
    ),
    Section(
        "Speed and memory",
        "Llama-3-8B shape: the default with completion-only labels",
        "e2e_llama3_8b_capability.csv",
        "Rows with a label share supervise only the end of each row, as prompt/completion data does; "
        "these are the step-time ratios that equal GPU time is computed with.",
    ),
    Section(
        "Speed and memory",
        "Llama-3-8B shape: ablation",
        "e2e_llama3_8b_ablation.csv",
        "Each `abl-*` row switches one part off: the MLP on every token (`mlp-dense`), the loss on "
        "every position (`loss-all`), an out-of-place residual add (`copy-residual`), PyTorch ops instead of the "
        "Triton kernels (`reference`), the model's own loss instead of the segmented one (`hf-loss`).",
    ),
    Section(
        "Speed and memory",
        "Llama-3-8B shape: longest trainable context without offload",
        "e2e_llama3_8b_longest.csv",
        "Doubling, then bisection at 8K resolution, under an 80 GB cap enforced as a per-process memory fraction; "
        "one training step per probe.",
        ("e2e_llama3_8b_longest_T.png",),
    ),
    Section(
        "Speed and memory",
        "Llama-2-7B shape",
        "e2e_llama2_7b_sweep.csv",
        "As for the Llama-3-8B shape: multi-head attention and a 32K vocabulary.",
        ("e2e_llama2_7b_sweep_memory.png",),
    ),
    Section(
        "Speed and memory",
        "Llama-2-7B shape: longest trainable context",
        "e2e_llama2_7b_longest.csv",
        "As for the Llama-3-8B shape.",
        ("e2e_llama2_7b_longest_T.png",),
    ),
    Section(
        "Speed and memory",
        "SmolLM2-135M (real weights)",
        "e2e_smollm2.csv",
        "A small model leaves the GPU mostly idle, so these rows say little about speed at scale.",
        ("e2e_smollm2_memory.png", "e2e_smollm2_step_time.png"),
    ),
    Section(
        "Speed and memory",
        "The paper's setting on the Llama-3-8B shape",
        "e2e_llama3_8b.csv",
        "Here lemo is the paper's setting: the oracle scorer, keep ratio 0.4, a selection per layer; "
        "`-tokens` means eliminated tokens skip the MLP too. Its quality is not held (see below).",
    ),
    Section(
        "Speed and memory",
        "The PyTorch reference path (no Triton kernels)",
        "e2e_reference_path.csv",
        "lemo here is the plain PyTorch reference path with the paper's setting, measured before the "
        "kernels existed.",
    ),
    Section(
        "The longest context on one GPU",
        "Offload and tiling, Llama-3-8B shape under an 80 GB cap",
        "e2e_llama3_8b_offload.csv",
        "`+offload` keeps each layer's checkpointed input in pinned host memory; `+tiled` runs the MLP in row tiles, "
        "`+tiled-attn` the whole layer but the attention core. The `exact+offload*` rows are lemo's own code with "
        "elimination off, so both sides share one offload and tiling path. A cold step (no warm-up) includes the "
        "one-time tuning of the attention kernels. Discussion: [longest.md](longest.md).",
        ("e2e_llama3_8b_offload_memory.png", "e2e_llama3_8b_offload_step_time.png"),
    ),
    Section(
        "The longest context on one GPU",
        "Longest trainable context with offload",
        "e2e_llama3_8b_offload_longest.csv",
        "A plan's prediction, then one step above it, over several device calls "
        "(`e2e_llama3_8b_offload_longest_calls.csv`, merged by `benchmarks/e2e/combine_longest.py`). The fully tiled "
        "stacks are missing: their steps at these lengths take longer than a device call allows.",
        ("e2e_llama3_8b_offload_longest_T.png",),
    ),
    Section(
        "The longest context on one GPU",
        "Longest context with full tiling: predicted, not measured",
        "longest_prediction.csv",
        "`lemo plan` and the measured slopes, for the stacks whose search does not fit in a device call.",
    ),
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
    Section(
        "Quality and capability",
        "The held-out capability suite (SmolLM2-135M, 16K)",
        "suite_smollm2.csv",
        "Six task families mixed in every training row, evaluated in a phrasing never trained on, with other names "
        "and a novel never trained on ([suite.md](suite.md)). LoRA r8 on q/k/v/o, YaRN x2 to 16K, one 16K row per "
        "step, lr 5e-4. `default` is `SparsityConfig()` as it was then (labelled blocks, then random ones); `backward-random` is backward elimination with random "
        "blocks ([design.md](design.md#13-backward-elimination-and-the-supervision-scorer)). Exact match per family, "
        "mean and standard error over seeds; perplexity on held-out plain text.",
        ("suite_smollm2.png",),
    ),
    Section(
        "Quality and capability",
        "The held-out capability suite v2 (SmolLM2-135M, 16K)",
        "suite_v2_smollm2.csv",
        "The suite's defaults (v2: shorter answers than v1), same setup. `dense@48` is dense LoRA's own adapter "
        "after 48 of its 60 steps: equal GPU time for the default, whose step is 0.80x Liger exact's at 16K "
        "(table above). v2 is still too hard: dense LoRA scores near 0 on five families of six. The "
        "`backward-gradient` and `oracle` jobs trained but were cut off before their evaluation by the end of the "
        "device call, so they have no rows.",
        ("suite_v2_smollm2.png",),
    ),
    Section(
        "Quality and capability",
        "Sizing suite v3: dense LoRA on each rung (SmolLM2-135M, 16K)",
        "suite_v3_sizing_smollm2.csv",
        "Dense LoRA only, 60 steps, prompt/completion rows, one row per variant of "
        "`benchmarks/quality/suite_sizing_rungs.json` (`dense:D_both`: six training wordings and one shared "
        "'Answer:' lead; `E_easy` and `F_easiest`: fewer facts on top; `G_indist`: v2 evaluated in its training "
        "wording), all at once on one GPU. `suite.py sizing choose` picked `suite_v3_sizing_chosen.json` (preset "
        "`v3`). Details: [suite.md](suite.md#v3-sized-and-measured).",
    ),
    Section(
        "Quality and capability",
        "The held-out capability suite v3 (SmolLM2-135M, 16K)",
        "suite_v3_smollm2.csv",
        "Suite v3 (preset `v3`), same setup as v2. In this run `default` is `SparsityConfig()` as it was before "
        "2026-12-05 (labelled blocks, then random ones) and `supervision` is the default since (the supervision "
        "scorer on 3/4 of the free budget); `oracle-forward` keeps the evidence blocks first; `dense@49` is dense "
        "LoRA's adapter after 49 of its 60 steps, equal GPU time for a step of 0.81x Liger exact's at 16K "
        "(`e2e_llama3_8b_liger.csv`, the H100 rows). Prompt/completion form only.",
        ("suite_v3_smollm2_frontier.png", "suite_v3_smollm2.png"),
    ),
    Section(
        "Quality and capability",
        "The held-out capability suite v4 (SmolLM2-135M, 16K)",
        "suite_v4_smollm2.csv",
        "Suite v4 (preset `v4`: v3 with counts in digits), same setup, both forms, 3 seeds, H100, "
        "commit b67ee0f (prompt/completion). `keep50` is `SparsityConfig()` (the supervision selector at keep 0.5, trimmed last "
        "layer); `dense@43` is dense LoRA's adapter after 43 of its 60 steps, a little more than equal GPU time "
        "for the default's 0.678x-0.714x of Liger exact's step at 32K (`e2e_llama3_8b_liger.csv`). The frontier "
        "plot counts the default's steps at 0.678x, its step ratio at 67e29b8 (`plot_suite_frontier.py --commit "
        "67e29b8`): that commit changed which kernel computes the attention, not its values, so the adapters "
        "trained at b67ee0f are what it trains. The plain-text rows (`text`: the same rows, loss everywhere) ran "
        "at 2ff4f59; `dense@41` is the 2%-labelled rows' equal GPU time and, within a step, plain text's too: keep "
        "0.5's plain-text step is 0.699x Liger exact's at 32K (H100, 6efe91d), 41.9 steps, where the plain-text "
        "frontier places the default (`plot_suite_frontier.py --form text --commit 6efe91d`).",
        ("suite_v4_smollm2_frontier.png", "suite_v4_smollm2_text_frontier.png", "suite_v4_smollm2.png"),
    ),
    Section(
        "Quality and capability",
        "The held-out capability suite v6, dense LoRA only (SmolLM2-135M, 16K)",
        "suite_v6_smollm2.csv",
        "Suite v6 (preset `v6`: v4 on unwrapped filler, so a recall question quotes the context's own tokens, and "
        "recall's answer line echoing the quote's last four words; [suite.md](suite.md#v5-and-v6-recalls-quote-was-"
        "never-the-contexts-text)), same setup, both forms, 3 seeds, H100, commit 341d553. Dense LoRA only: a "
        "sizing run. Recall's answer-token accuracy rose from v4's 0.09 to 0.45 (0.15 to 0.41 as plain text); its "
        "exact match from 0.00 to 0.03.",
        ("suite_sizing_v4_v6.png", "suite_v6_smollm2.png"),
    ),
    Section(
        "Quality and capability",
        "The held-out capability suite v6: lemo against dense LoRA (SmolLM2-135M, 16K)",
        "suite_v6_compare_smollm2.csv",
        "Suite v6, same setup, both forms, H100, commit 55c281e, one session (four calls of "
        "`gpu_capability.sh suite`); dense LoRA was trained again in it beside lemo's configs (the dense-only "
        "sizing run above, 341d553, is a separate run with the same seeds). `keep50` is `SparsityConfig()`; "
        "`dense@41` is dense LoRA at 41 steps, the default's equal GPU time (its step is 0.707x Liger exact's at 16K "
        "on 2%-labelled rows, 67e29b8, 42.4 steps; 0.699x at 32K on plain text, 6efe91d, 41.9 steps); both have 5 "
        "seeds, the others 3. `backward-supervision` and `backward-gradient` are backward elimination at keep 0.6 "
        "(0.99x Liger exact's step at 16K, `e2e_llama3_8b_bwd_kernel.csv`, H200, 5690162); `oracle-default` is "
        "the default with every evidence block kept first. The frontier figures place each config at its steps "
        "times its step ratio (`plot_suite_frontier.py`; the backward points timed as `liger-lemo-bwd-grad+gc`).",
        (
            "suite_v6_compare_smollm2_frontier.png",
            "suite_v6_compare_smollm2_text_frontier.png",
            "suite_v6_compare_smollm2.png",
        ),
    ),
    Section(
        "Quality and capability",
        "The copy tier outside v7: suite v6, prompt/completion (SmolLM2-135M, 16K)",
        "suite_v6_copy3_smollm2.csv",
        "A check of `SparsityConfig()` with its copy tier (`copy_ngram=3`, built on suite v7's recall family) on "
        "the earlier suite v6 (other counts per row), same setup, prompt/completion rows, 3 seeds, one run on an "
        "H100 at ab9fe5b: `default` (the copy tier), `keep50` (the default before it) and dense LoRA trained side by "
        "side, `dense@41` the default's equal GPU time (0.701x Liger exact's step at 16K, "
        "`e2e_llama3_8b_copy3.csv`: 42.1 steps). The default ties `keep50` and dense LoRA at equal steps in suite "
        "exact match (0.20 against 0.22 and 0.18) and token accuracy (0.72 against 0.71 and 0.69), and is above "
        "dense@41 in both (2.5 and 5.0 standard errors); recall's answer-token accuracy is 0.54 ± 0.02 against "
        "keep50's 0.46 and dense's 0.45, and it keeps 0.91 of the evidence blocks against keep50's 0.70 at filler "
        "0.43 against 0.45. Plain text is not in it: there the default's selection is `keep50`'s, measured on v6 in "
        "the section above.",
    ),
    Section(
        "Quality and capability",
        "Sizing suite v7: questions per row (SmolLM2-135M, 16K)",
        "suite_v7_sizing_smollm2.csv",
        "Dense LoRA only, 60 steps, prompt/completion rows, 16K eval, H200, commit 81fe8bf; the variants of "
        "`benchmarks/quality/suite_sizing_v7.json`, all at once: `A_v6` is v6 (1 seed), `B_x2` and `C_x4` (2 seeds) "
        "ask about twice and four times as many facts of the five low families per row (26 and 49 questions "
        "against v6's 14). More questions per row did not size the suite: recall (0.03 to 0.17) and counting (0.22 "
        "to 0.38) rose, key-value and variable tracking fell, multi-value stayed at 0.00-0.03. `suite.py sizing "
        "choose` took C's counts and recall quotes and B's multi-value keys (`suite_v7_sizing_chosen.json`), the "
        "suite v7 run below.",
    ),
    Section(
        "Quality and capability",
        "The held-out capability suite v7: lemo against dense LoRA (SmolLM2-135M, 16K)",
        "suite_v7_smollm2.csv",
        "Suite v7 (v6 with 9 counts, 4 multi-value keys and 16 recall quotes per row: `suite_v7_sizing_chosen.json`), "
        "same setup, both forms, two sessions each with dense LoRA: seeds 0-2 on an H200 at commit 81fe8bf (one "
        "detached run; `backward-gradient` in the call after it, alone on the GPU), seeds 3-5 on an H100 at d093218 "
        "(two runs at once: `dilate1` and `supervision` in the second), merged from both sessions' part files. "
        "`keep50` is `SparsityConfig()`; `tail20` and `tail25` are the default with its last 12 or 15 of 60 steps "
        "dense (`dense_tail`); `dilate1` is the default with `score_dilation=1`; `supervision` is the default at "
        "keep 0.6; `dense@41` and `dense@46` are dense LoRA's adapter after 41 and 46 of its 60 steps: the "
        "default's equal GPU time (0.705x Liger exact's step at 16K, `e2e_llama3_8b_tail.csv`, first session: 42.3 "
        "steps) and tail20's (0.761x: 45.7 steps). The frontier figure places each config at its steps times that "
        "ratio (keep 0.6 at 0.787x, ca33484; backward elimination at 0.99x, 5690162; `dilate1` at the default's, "
        "not timed). A third session (H200, ef2a0ab, 3887b95 and 53d7ff7) added `copy3` (the default with "
        "`copy_ngram=3`, `SparsityConfig()` since 2026-12-06) in both forms over seeds 0-5, `copy3-tail20` (with a "
        "dense last 20% of steps) in both forms, `copy3-tail15` in plain text (seeds 0-5 each) and "
        "`oracle-tail20` (oracle-default with the 20% tail, seeds 0-2). Until 2026-12-06 every config but "
        "`default` ran without the copy tier, and `suite_jobs` pins that. The figures place the copy configs at "
        "their own steps: 0.701x at 16K on 2%-labelled rows and 0.722x on plain text (`e2e_llama3_8b_copy3.csv`, "
        "`e2e_llama3_8b_copy3_text.csv`), a plain-text tail at the dense step of `e2e_llama3_8b_tail_text.csv`.",
        ("suite_v7_smollm2_frontier.png", "suite_v7_smollm2_text_frontier.png", "suite_v7_smollm2.png"),
    ),
    Section(
        "Quality and capability",
        "Sizing suite v7 by steps: dense LoRA for 120 steps (SmolLM2-135M, 16K)",
        "suite_v7_steps120_smollm2.csv",
        "Dense LoRA on suite v7, prompt/completion rows, 120 steps of one fresh 16K row each (warm-up 12), its adapter "
        "after steps 60 and 90 evaluated as `dense@60` and `dense@90` (snapshots, with the 120-step run's warm-up), "
        "3 seeds, H100, ac5cace ([suite.md](suite.md#v7-with-twice-the-steps-measured-it-sizes-two-families-not-six)). "
        "Multi-key and recall reach 0.74 and 0.76 exact match at 120 steps; counting, key-value lookup, multi-value "
        "and variable tracking stay near their 60-step scores.",
    ),
    Section(
        "Quality and capability",
        "Sizing suite v8: easier forms (SmolLM2-135M, 16K)",
        "suite_v8_sizing_smollm2.csv",
        "Dense LoRA only, 60 steps, prompt/completion rows, 16K eval, H100, commit a6b294c, 2 seeds a rung, all 6 jobs "
        "at once; the rungs of `benchmarks/quality/suite_sizing_v8.json` over v7 (config `dense:RUNG`): `A_hard` "
        "states a multi-value key's values and a counted name's mentions back to back (`multivalue_adjacent`, "
        "`count_adjacent`) and has variable tracking hold out a name-first wording (`held_out`, one copy per "
        "chain); `B_mid` makes variable tracking a plain fact and has key-value lookup hold out YAML instead of XML; "
        "`C_easy` adds 2-digit values and 2 multi-value keys. Variable tracking came into range (B), counting "
        "moved between chance-level scores on rungs with the same counting knobs, and multi-value and key-value "
        "lookup stayed low on every rung. `sizing choose` wrote `suite_v8_sizing_chosen.json`, the preset `v8` "
        "([suite.md](suite.md#v8-easier-forms-measured-it-sizes-variable-tracking-not-the-other-three)).",
    ),
    Section(
        "Quality and capability",
        "The held-out capability suite v8: lemo against dense LoRA (SmolLM2-135M, 16K)",
        "suite_v8_smollm2.csv",
        "Suite v8 (preset `v8`, passed as `suite_v8_sizing_chosen.json` over v7 on the machine of the sizing run), "
        "same setup, both forms, 3 seeds, one H100 session at a6b294c: the run right after the sizing call, with 12 "
        "workers, lost four jobs to GPU memory (dense seed 1 and the default's seeds 1-2 in prompt/completion, seed "
        "1 in plain text), which the next call ran with 4 workers from the same part files. `default` is "
        "`SparsityConfig()` (the copy tier on prompt/completion rows, off in plain text); `oracle-default` is the "
        "default with every evidence block kept first; `dense@42` and `dense@44` are dense LoRA's adapter after 42 "
        "and 44 of its 60 steps: the default's equal GPU time on prompt/completion rows (0.701x Liger exact's step "
        "at 16K, `e2e_llama3_8b_copy3.csv`: 42.1 steps) and, 0.6 step above it, on plain text (0.723x: 43.4).",
        ("suite_v8_smollm2_frontier.png", "suite_v8_smollm2_text_frontier.png", "suite_v8_smollm2.png"),
    ),
    Section(
        "Quality and capability",
        "Suite v8 with yet easier knobs (v8d; SmolLM2-135M, 16K)",
        "suite_v8d_smollm2.csv",
        "v8 with one-word recall answers, counts up to 4, 6 multi-value keys and key-value blocks of 3 pairs, all "
        'asked (`--suite \'{"preset": "v8", "recall_words": 1, "count_max": 4, "multivalue_keys": 6, '
        '"kv_pairs": 3, "kv_asked": 3}\'`), dense LoRA and the default, prompt/completion rows, 3 seeds, H100, '
        "a70564b. A negative sizing result: recall, counting and multi-value scored lower than on v8 (recall 0.09 "
        "against 0.32, counting 0.14, under its chance of 0.25, multi-value 0.07 against 0.18), key-value lookup "
        "the same (0.07), and multi-key fell with the extra facts (0.26 against 0.45). The default ties dense "
        "LoRA at equal steps here too.",
    ),
    Section(
        "Quality and capability",
        "Sizing suite v9: where the evidence sits (SmolLM2-135M, 16K)",
        "suite_v9_sizing_smollm2.csv",
        "Dense LoRA only, 60 steps, prompt/completion rows, 16K eval with 48 questions a family, H100, commit "
        "5a76af8, 2 seeds a rung, all 6 jobs at once; the rungs of `benchmarks/quality/suite_sizing_v9.json` over v8 "
        "(config `dense:RUNG`): `A_v8` is v8, `B_half` puts every family's evidence at depths [0.5, 1] of the "
        "context (`depth_band`), `C_quarter` at [0.75, 1]. The rows `exact_match_near` and `exact_match_far` score "
        "apart the questions whose evidence starts within 8192 tokens of the answer and those further back. On A, "
        "multi-key, variable tracking and recall answer about twice as often near as far; multi-value and key-value "
        "lookup are as low near as far and no band lifted them. `sizing choose` wrote `suite_v9_sizing_chosen.json`, "
        "the preset `v9` "
        "([suite.md](suite.md#v9-where-the-evidence-sits-measured-it-sizes-counting-and-brings-recall-to-the-edge)).",
    ),
    Section(
        "Quality and capability",
        "The held-out capability suite v9: lemo against dense LoRA (SmolLM2-135M, 16K)",
        "suite_v9_smollm2.csv",
        "Suite v9 (preset `v9`, passed as `suite_v9_sizing_chosen.json` over v8 on the machine of the sizing run), "
        "same setup, both forms, 3 seeds, one H100 session at 5a76af8, 6 workers, right after the sizing call. "
        "`default` is `SparsityConfig()` (the copy tier on prompt/completion rows, off in plain text); "
        "`oracle-default` is the default with every evidence block kept first; `dense@42` and `dense@44` are dense "
        "LoRA's adapter after 42 and 44 of its 60 steps, the default's equal GPU time as on v8 (0.701x and 0.723x "
        "Liger exact's step at 16K). Each job also writes `exact_match_near` and `exact_match_far` per family.",
        (
            "suite_v9_smollm2_frontier.png",
            "suite_v9_smollm2_text_frontier.png",
            "suite_v9_smollm2.png",
            "suite_distance_v9.png",
        ),
    ),
    Section(
        "Quality and capability",
        "Sizing suite v10: held-out formats, multi-value digits, the training wordings (SmolLM2-135M, 16K)",
        "suite_v10_sizing_smollm2.csv",
        "Dense LoRA only, as the v9 sizing, H100, commit 7722ac0, 2 seeds a variant, all 8 jobs at once; the "
        "variants of `benchmarks/quality/suite_sizing_v10.json` over v9 (config `dense:VARIANT`): key-value lookup "
        "holds out the Python dict (`A_pydict`, multi-value as v9), CSV rows (`B_csv`, multi-value of 2 digits) or "
        "put() calls (`C_calls`, 1 digit); `D_indist` asks v9's questions in the training wordings. CSV lifts "
        "key-value lookup to 0.18, shorter multi-value values score less, and in the training wordings multi-value "
        "and key-value lookup stay at 0.25 and 0.26: not sized. `sizing choose` wrote `suite_v10_sizing_chosen.json`, "
        "the preset `v10` ([suite.md](suite.md#v10-held-out-formats-with-a-twin-shorter-multi-value-values-and-the-"
        "training-wordings-measured-no-lever-sizes-multi-value-or-key-value-lookup)).",
        ("suite_sizing_v10.png",),
    ),
    Section(
        "Quality and capability",
        "The held-out capability suite v10: lemo against dense LoRA (SmolLM2-135M, 16K)",
        "suite_v10_smollm2.csv",
        "Suite v10 (passed as `suite_v10_sizing_chosen.json` over v9), same setup as v9, both forms, 3 seeds, H100. "
        "Dense LoRA's 18 jobs (with the `dense@42` and `dense@44` snapshots) ran at 7722ac0 right after the sizing "
        "call; the default's and the oracle's 12 jobs at 56454a6, resumed from the committed CSV "
        "(`SUITE_RESUME_CSV`, docs/suite.md); the library's code is the same at both. The default is above dense@42 "
        "and dense@44 at equal GPU time in both forms, ties dense at equal steps in prompt/completion, and sits at "
        "the evidence oracle; plain-text perplexity 1.020x dense's.",
        ("suite_v10_smollm2_frontier.png", "suite_v10_smollm2_text_frontier.png", "suite_distance_v10.png"),
    ),
    Section(
        "Quality and capability",
        "Far evidence: suite v10 with every multi-key and variable-tracking fact over 8K tokens back (SmolLM2-135M, 16K)",
        "suite_v10_far_smollm2.csv",
        "`benchmarks/quality/suite_v10_far.json` (v10 with multi-key and variable-tracking statements in the first "
        "40% of the row, so at 16K each such question looks back over 8K tokens, beyond SmolLM2's native length), "
        "H100, 56454a6, dense LoRA (with `dense@42`, `dense@44`) and the default, both forms, 3 seeds, 32 questions "
        "a family and seed. Prompt/completion, far exact match: multi-key 0.229 ± 0.021 for the default against "
        "0.167 ± 0.028 for dense (a tie, 1.8 standard errors) and 0.062 for dense@42; variable tracking 0.396 "
        "against 0.354 and 0.083. In plain text every config scores 0 on far multi-key and variable tracking.",
    ),
    Section(
        "Quality and capability",
        "Sizing suite v11: longer values and more questions for multi-value and key-value lookup (SmolLM2-135M, 16K)",
        "suite_v11_sizing_smollm2.csv",
        "Dense LoRA only, as the v10 sizing, H100, 56454a6, 2 seeds a variant, all 6 jobs at once; the variants of "
        "`benchmarks/quality/suite_sizing_v11.json` over v10 (config `dense:VARIANT`): multi-value / key-value values "
        "of 4 / 3 digits (`A_long`) or 5 / 4 (`B_longer`), and A's values with 6 multi-value keys and 2 key-value "
        "blocks a row (`C_more`). Multi-value 0.04 / 0.06 / 0.14, key-value lookup 0.24 / 0.25 / 0.27 exact match "
        "(v10: 0.15, 0.22): no rung sizes either, so no preset v11 was made. Table: "
        "`benchmarks/results/logs/session27_sizing_table.txt`.",
        ("suite_sizing_v11.png",),
    ),
    Section(
        "Quality and capability",
        "Sizing suite v12: fewer rows a key-value block (SmolLM2-135M, 16K)",
        "suite_v12_sizing_smollm2.csv",
        "Dense LoRA only, as the v11 sizing, H100, e5c7844, 2 seeds a variant, all 6 jobs at once; the variants of "
        "`benchmarks/quality/suite_sizing_v12.json` over v10 (config `dense:VARIANT`): key-value blocks of 3 rows, "
        "every one asked (`A_pairs3`), A's blocks twice a row with 6 multi-value keys (`B_pairs3_more`), and 2 rows "
        "a block, 3 blocks a row, 6 multi-value keys (`C_pairs2_more`). Key-value lookup 0.48 / 0.41 / 0.31 exact "
        "match (v10: 0.22), following the value's first character (0.50 / 0.47 / 0.34): sized on A, which `sizing "
        "choose` wrote to `suite_v12_sizing_chosen.json`, the preset `v12`. Multi-value stays at 0.11-0.15; counting "
        "fell to 0.24-0.30 (chance 0.33) with no counting knob changed. Table: "
        "`benchmarks/results/logs/session28_sizing_table.txt`.",
        ("suite_sizing_v12.png",),
    ),
    Section(
        "Quality and capability",
        "Sizing suite v13: counting's max form (SmolLM2-135M, 16K)",
        "suite_v13_sizing_smollm2.csv",
        "Dense LoRA only, as the v12 sizing, H100, d712273, 2 seeds a variant, all 4 jobs at once beside the v12 "
        "suite's jobs; the variants of `benchmarks/quality/suite_sizing_v13.json` over v12 (config `dense:VARIANT`): "
        '`count_form` "max" (the largest of a counted name\'s distinct 2-digit values) with 2-5 values a name '
        "(`A_max5`; a random pick among them scores 0.32) and 2-3 (`B_max3`; 0.42). Counting 0.07 / 0.09 exact "
        "match, far under both picks' chance and under v12's counts (0.26): **negative**, no preset v13. The value's "
        "first digit is right 0.35 / 0.28 of the time and its second 0.30 / 0.35, so at 16K the model neither finds "
        "the name's values nor copies one (on the CPU at 2K it copied one: `suite_count_max_cpu.csv`). Table: "
        "`benchmarks/results/logs/session30_sizing_table.txt`.",
        ("suite_sizing_v13.png",),
    ),
    Section(
        "Quality and capability",
        "Sizing suite v14: counting's latest value at 60 steps (SmolLM2-135M, 16K)",
        "suite_v14_sizing_smollm2.csv",
        "Dense LoRA only, as the v13 sizing, H100, e55aa46, 2 seeds a variant, all 6 jobs at once; the variants of "
        '`benchmarks/quality/suite_sizing_v14.json` over v12 (config `dense:VARIANT`): `count_form` "last" (the '
        "value a counted name was last updated to; 2-5 updates for each of 5 names, a random pick among them scores "
        "0.32), updates scattered (`A_last5`) or back to back (`B_last5_adjacent`), and A with 2 multi-value keys "
        "stated in the context's last quarter (`C_last5_mv_near`). At 60 steps counting stays at or under its pick "
        "chance and multi-value under 0.2: **negative** at 60 steps. Table: "
        "`benchmarks/results/logs/session31_sizing_table.txt`.",
        ("suite_sizing_v14.png",),
    ),
    Section(
        "Quality and capability",
        "Sizing suite v14: by training length and steps (SmolLM2-135M, 4K-16K)",
        "suite_v14_lengths_smollm2.csv",
        "Dense LoRA only, H100, 5e8b9af, `benchmarks/quality/suite_lengths_v14.json`: v12 (seeds 5-6) and v14's rung "
        "C (seeds 2-3) trained at 4K, 8K and 16K for 60 steps and at 16K for 120 steps (as many rows as steps), "
        "each scored at its training length (the 16K runs also at 8K and 4K, in the CSV). Trained at 4K or 8K, "
        "rung C learns counting's latest value and multi-value; at 16K only with 120 steps, where every family "
        "is in [0.4, 0.9]: `sizing choose` over that run wrote `suite_v14_sizing_chosen.json`, the preset `v14`. "
        "Table: `benchmarks/results/logs/session31_lengths_table.txt`.",
        ("suite_lengths_v14.png",),
        table=suite_own_length_table,
    ),
    Section(
        "Quality and capability",
        "The held-out capability suite v12: lemo against dense LoRA (SmolLM2-135M, 16K)",
        "suite_v12_smollm2.csv",
        "Suite v12 (passed as `suite_v12_sizing_chosen.json` over v10), the v10 setup, H100. Dense LoRA's 18 jobs in "
        "both forms over 3 seeds (with the `dense@42` and `dense@44` snapshots) and the default's prompt/completion "
        "seed 0 ran at e5c7844 after the sizing call; the default's and the oracle's other jobs at d712273, resumed "
        "from this CSV (`SUITE_RESUME_CSV`), and in the same session seeds 3 and 4 of dense, the default and the "
        "oracle in prompt/completion (the library's code is the same at both commits). Prompt/completion exact match "
        "at 16K: the default 0.379 ± 0.019, dense 0.373 ± 0.021 (5 seeds each: a tie, 1.02x), the oracle 0.374 ± "
        "0.028, dense@42 0.257 ± 0.033 (3 seeds, 3.2 standard errors under the default; on seeds 0-2 alone the "
        "default scores 0.401). Plain text, answer-token accuracy: the default 0.594, dense 0.529, dense@44 0.475, "
        "the oracle 0.614; perplexity 24.76 against dense's 24.23 (1.022x). Counting stays under its chance (0.26 against 0.33) and "
        "multi-value under 0.12 for every config.",
        ("suite_v12_smollm2_frontier.png", "suite_v12_smollm2_text_frontier.png"),
    ),
    Section(
        "Quality and capability",
        "Issue 19's targets on suite v12",
        "suite_v12_smollm2_targets.csv",
        "The five targets of the selector issue judged on the v12 run above by `benchmarks/quality/suite_targets.py`: "
        "the default against dense LoRA at equal steps (at least 0.97x), against the dense snapshot of its GPU time "
        "(`dense@42` on prompt/completion rows, `dense@44` on plain text: above it by 2 standard errors of the "
        "difference, since a tie is not a win), against the evidence oracle (at most 0.03 below), plain-text "
        "perplexity (at most 1.01x dense's) and the step at 32K on the Llama-3-8B shape (at most 0.75x Liger exact's, "
        "from `e2e_llama3_8b_copy3.csv` and `_text.csv`, H200, ef2a0ab). Suite means at 16K over families, then seeds.",
    ),
    Section(
        "Quality and capability",
        "Does answer length explain the suite's low families? (CPU)",
        "suite_answer_tokens_cpu.csv",
        "Mean SmolLM2 tokens of each family's held-out answers over 30 drawn contexts "
        "(`benchmarks/quality/answer_tokens_probe.py`; recall quotes the filler and is not counted), beside dense "
        "LoRA's exact match and answer-token accuracy at 16K in the GPU suite of the same preset. Multi-key has "
        "the longest answers but one and the highest score; variable tracking's and key-value lookup's are shorter "
        "and score far lower: what keeps a family under 0.4 is the skill, not the number of tokens to get right.",
    ),
    Section(
        "Quality and capability",
        "Where briefly trained answers go wrong: finding a value or copying it (suite v10, CPU)",
        "suite_answer_errors_cpu.csv",
        "SmolLM2 with LoRA r8 on q/k/v/o after 60 prompt/completion rows of 2K tokens (fp32, lr 5e-4) of v10's knobs "
        "with multi-key, multi-value and key-value lookup only, then 16 teacher-forced questions a family at 2K in "
        "the held-out wording and in the training ones (`benchmarks/quality/answer_errors_probe.py`). Accuracy per "
        "answer-token kind (`lemo.eval.answer_kinds`): a value's first character (finding it) and the later ones "
        "(copying it), and the kind where each wrong answer first went wrong. Key-value lookup's misses are all at "
        "the first digit ([suite.md](suite.md#why-key-value-lookup-misses-the-row-not-the-digits-cpu)); the "
        "`kv_pairs` 3 rows test a block of 3 rows.",
    ),
    Section(
        "Quality and capability",
        "Where wrong answers come from: the fact confused or none found (suite v12, CPU)",
        "suite_answer_sources_cpu.csv",
        "The errors probe (`benchmarks/quality/answer_errors_probe.py`, commit 5025166) on v12's knobs with "
        "multi-value, key-value lookup and counting only, 60 rows of 2K, 16 questions a family and wording, each "
        "answered teacher-forced and greedily. `source_*` counts where each greedy answer's first value came from "
        "(`lemo.eval.answer_kinds.value_source`): the right fact, another value of the context, a value of none of "
        "its words, or none; `greedy_values` the values generated most. Key-value lookup's wrong answers are mostly "
        "another row's value (7 of 9 held out); counting is at chance held out (0.19) and says 3 ten times of 16 in "
        "the training wordings ([suite.md](suite.md#where-wrong-answers-come-from-cpu)).",
    ),
    Section(
        "Quality and capability",
        "Counting alone, 3 counted names a row (suite v12, CPU)",
        "suite_answer_sources_count3_cpu.csv",
        "The same probe at ce02457 with counting only and `count_keys` 3 (v12: 9), 60 rows of 2K. Negative: 0.375 "
        "held out, never answering 3, and 0.06 in the training wordings, answering 2 every time: fewer counts a row "
        "do not teach counting ([suite.md](suite.md#where-wrong-answers-come-from-cpu)).",
    ),
    Section(
        "Quality and capability",
        "What a briefly trained model answers first (suite v3-v6, CPU)",
        "suite_first_token_cpu.csv",
        "SmolLM2 with LoRA r8 on q/k/v/o after 60 prompt/completion rows of 2K tokens (fp32, lr 5e-4), then "
        "teacher-forced held-out questions at 2K (`benchmarks/quality/first_token_probe.py`): how often the first "
        "answer token is right, and what was predicted first. In v3 a count is a word token where every number "
        "starts with a bare space; v4 counts in digits ([suite.md](suite.md#v4-counts-in-digits-the-format-confound-of-v3)). "
        "v5 and v6 rows: recall on unwrapped filler, then with the quote's end echoed; the first v6 (6efe91d) "
        "echoed the full stop, the later one (4b262a0) opens the answer with it ([suite.md](suite.md#v5-and-v6-"
        "recalls-quote-was-never-the-contexts-text)).",
    ),
    Section(
        "Quality and capability",
        "Does a selector keep the evidence? (suite rows, no training)",
        "suite_bias_cpu.csv",
        "The suite's generator knows which spans each answer needs. Per selector, the share of those evidence "
        "blocks kept against the share of other unlabelled (filler) blocks, over the sparse layers, on the "
        "untrained model (forward passes, CPU), each layer choosing after its own forward as backward elimination "
        "does, on the suite's first (v1) rows. Random selection keeps both at about the same share.",
    ),
    Section(
        "Quality and capability",
        "Does the fast mode's selector keep the evidence? (forward elimination, suite rows, no training)",
        "suite_bias_forward_cpu.csv",
        "The same measure for forward elimination, lemo's fast mode (0.80x Liger exact's step): one selection, made "
        "at the first sparse layer and shared by the others, so every layer keeps the same blocks. The supervision "
        "scorer reads the attention the labelled positions (plain text: the positions that repeat a far bigram) pay "
        "each block, with q and k rotated by the layer's RoPE tables. Unrotated, it kept 0.63 / 0.35 "
        "(prompt/completion) and 0.74 / 0.62 (plain text): `suite_bias_forward_prerope_cpu.csv`.",
    ),
    Section(
        "Quality and capability",
        "The fast mode's selector at 16K (suite v2 rows, no training)",
        "suite_bias_forward_16k_cpu.csv",
        "The same measure at 16K on the suite's current (v2) rows, 2 rows, keep 0.6. Evidence is a smaller share of "
        "a 16K row, so once the evidence and the labelled blocks are kept the rest of the budget goes to filler: "
        "compare each selector with random at the same length, not with the 4K table.",
    ),
    Section(
        "Quality and capability",
        "The default's selector per family (suite v7 rows at 8K, no training)",
        "suite_bias_family_v7_cpu_rows8.csv",
        "`suite_bias.py --by-family`: per family, the share of its evidence blocks kept (each family's own spans, "
        "`evidence_by_family`), untrained SmolLM2 on the CPU, 8 v7 rows of 8K, keep 0.5; `forward: supervision + "
        "0.25 random` is `SparsityConfig()`. One shared selection, so every sparse layer gives the same numbers. "
        "The selector helps multi-key most (0.80 against random's 0.41) and counting least (0.44 against 0.43); "
        "recall's evidence is kept at 0.51 (random 0.38), and as plain text at random's rate.",
    ),
    Section(
        "Quality and capability",
        "The default's selector per family on suite v8 rows (8K, no training)",
        "suite_bias_family_v8_cpu_rows8.csv",
        "`suite_bias.py --by-family` as above, on 8 v8 rows of 8K (untrained SmolLM2, CPU, keep 0.5, commit "
        "72429e8): `forward: supervision + 0.25 random, copy 3` is "
        "`SparsityConfig()` on prompt/completion rows (the copy tier), `forward: supervision + 0.25 random` its "
        "plain-text selection. With the copy tier the default keeps variable tracking's, multi-key's, recall's "
        "and multi-value's evidence at 0.84-1.00 against filler's 0.19, key-value's at 0.69, and counting's least "
        "(0.46): a count is not copied from the context, so no 3-gram points at the counted mentions.",
    ),
    Section(
        "Quality and capability",
        "The default's selector per family on suite v9 rows (8K, no training)",
        "suite_bias_family_v9_cpu_rows8.csv",
        "The same on 8 v9 rows of 8K (counting and recall stated in the context's second half, key-value lookup "
        "in its last quarter; untrained SmolLM2, CPU, keep 0.5, commit aaa2ebd). With the copy tier the default keeps "
        "0.86 of the evidence against 0.18 of the filler (v8: 0.78 against 0.19): variable tracking 1.00, recall "
        "0.99, multi-key 0.95, multi-value 0.93, key-value 0.87 and counting 0.61 (v8: 0.69 and 0.46; the banded "
        "evidence sits nearer the labelled answers).",
    ),
    Section(
        "Quality and capability",
        "The default's selector when multi-key and variable-tracking evidence is far back (8K, no training)",
        "suite_bias_family_v10far_cpu_rows8.csv",
        "The same on 8 rows of 8K of `benchmarks/quality/suite_v10_far.json` (v10 with multi-key and variable-tracking "
        "evidence in the context's first 40%; untrained SmolLM2, CPU, keep 0.5, commit 8af3943). With the copy tier "
        "(the prompt/completion default) distance does not change what is kept on prompt/completion rows: multi-key "
        "0.94 and variable tracking 1.00 of their evidence blocks (v9's rows, evidence anywhere: 0.95 and 1.00), "
        "filler 0.18. Without it (the plain-text default) far evidence is kept less: on plain text multi-key 0.60 and "
        "variable tracking 0.50 (v9: 0.84 and 0.78; 8-9 variable-tracking blocks in all), filler 0.33, and on "
        "prompt/completion rows 0.65 and 0.50 (v9: 0.84 and 0.89). The supervision score finds far evidence less "
        "often than near; the copy tier finds it at any distance. So a far-retrieval gap on prompt/completion rows, if "
        "the GPU run finds one, is not the selection's; on plain text it may be.",
    ),
    Section(
        "Quality and capability",
        "The default's selector on suite v14's rows (8K, no training)",
        "suite_bias_family_v14_cpu_rows8.csv",
        "The same on 8 rows of 8K of preset v14 (counting's latest value, 2 multi-value keys in the last quarter; "
        "untrained SmolLM2, CPU, keep 0.5, commit 9fc42fd), before the v14 suite runs on the GPU. Over layers "
        "14-28, the prompt/completion default (with the copy tier) keeps 0.84 of the evidence blocks against 0.19 of "
        "the filler: multi-value and variable tracking 1.00, recall 0.96, multi-key 0.92, key-value 0.82, counting's "
        "updates 0.72 (v9's counted mentions: 0.61). The plain-text default (no copy tier) keeps 0.67 against 0.30 on "
        "plain text, counting 0.62 and multi-value 0.86. Counting's evidence (every update of the asked names, 139 "
        "blocks of 323) is the family kept least in both forms.",
    ),
    Section(
        "Quality and capability",
        "Two other supervision scores per family (suite v7 rows at 8K, no training): votes",
        "query_score_votes_v7_cpu.csv",
        "`query_score_probe.py votes 8`: each labelled query row gives one vote to each of its 8 highest-attention "
        "blocks instead of adding its attention, so a question read by a few answer tokens counts as much as one "
        "read by many. Same rows and setup as the table above. Prompt/completion: every evidence block 0.55 "
        "(the default 0.53), recall 0.51 (0.51), count 0.49 (0.44), key-value 0.71 (0.64), multi-value 0.46 (0.50); "
        "plain text, which reads far-repeat positions, recall 0.56 (0.47). Small changes on two untrained rows' "
        "worth of blocks per family: not adopted without a GPU suite run.",
    ),
    Section(
        "Quality and capability",
        "Two other supervision scores per family (suite v7 rows at 8K, no training): union",
        "query_score_union_v7_cpu.csv",
        "`query_score_probe.py union 1.0`: prompt/completion rows scored by the labels plus plain text's far-repeat "
        "queries among the unlabelled positions (a question's quote and key tokens repeat the context), each score "
        "normalised to sum 1. Negative: recall's evidence falls to 0.36 (the default 0.51), key-value to 0.50 "
        "(0.64), variable tracking to 0.62 (1.00); multi-value (0.71) and count (0.55) rise. The plain-text rows "
        "are unchanged (the change applies to labelled rows only).",
    ),
    Section(
        "Quality and capability",
        "Copied n-grams' blocks kept after the labels, per family (suite v7 rows at 8K, no training)",
        "suite_bias_copy3_v7_cpu_rows8.csv",
        "`suite_bias.py --by-family`, selector `forward: supervision + 0.25 random, copy 3`: the default with "
        "`SparsityConfig(copy_ngram=3)`: in prompt/completion rows the context blocks holding a 3-gram the labelled "
        "positions repeat (at most 4 times in the row) are kept right after the labelled blocks; in plain text the "
        "earlier occurrences of 3-grams repeated at least 256 tokens later are kept first. Same rows and setup as "
        "the default's per-family table above. Prompt/completion: every evidence block 0.71 (the default 0.53) "
        "while filler falls to 0.17 (0.31); recall 0.85 (0.51), key-value 0.93 (0.64), multi-key 0.95 (0.80), "
        "multi-value 0.79 (0.50), count 0.48 (0.44), variable tracking 1.00 (1.00). Plain text: every evidence "
        "block 0.66 (0.57), filler 0.31 (0.31); recall 0.63 (0.47), key-value 0.86 (0.64), multi-value 0.79 (0.69), "
        "count 0.60 (0.53), multi-key 0.86 (0.83), variable tracking 1.00 (0.88). Trained on the GPU suite as "
        "config `copy3` (`suite_v7_smollm2.csv`), it became `SparsityConfig()` on 2026-12-06.",
    ),
    Section(
        "Quality and capability",
        "Copied n-grams on rows they were not built on: `lemo data` multi-key (CPU, no training)",
        "selection_bias_copy3_multikey_cpu.csv",
        "`capability.py --bias` over 8 rows of 8K of `lemo data`'s multi-key task (16 facts \"The secret code of "
        "NAME is NNNNN.\" in Austen, their questions answered at the row's end), untrained SmolLM2 with YaRN x2, "
        "keep 0.5, every sparse layer's kept share per region and per tenth of the row: `SparsityConfig()` without "
        "the copy tier and with it in both forms (`copy_plain_text=True`). The tier was built on suite v7's recall "
        "family; these rows are a check outside it. In prompt/completion it keeps the facts more often at the same "
        "filler share. In plain text it keeps the facts more often too, but the question-and-answer blocks at the "
        "row's end (the text that repeats the facts, with no later repeat of its own) far less, which is why the "
        "plain-text tier is off by default (`copy_plain_text`). A later session (59eafe1) added `copy tier + "
        "repeats` (`copy_repeats=True`: the later occurrences kept with their sources), plain text only: the "
        "question-and-answer blocks come back to 0.97 and the last tenth of the row to 0.80, with the facts at "
        "0.91, no more than without the tier (0.90).",
    ),
    Section(
        "Quality and capability",
        "Both ends of a far repeat in plain text, per family (suite v7 rows at 8K, no training)",
        "suite_bias_copy3r_v7_cpu_rows8.csv",
        "`suite_bias.py --by-family` at 59eafe1, the rows and setup of the per-family tables above (8 rows of 8K, "
        "untrained SmolLM2, keep 0.5), three selectors side by side: the default without the copy tier, the "
        "plain-text tier (sources) and the tier with the repeats kept too (`copy_repeats`). Plain text, every "
        "evidence block: 0.57 without the tier, 0.66 with the sources, 0.58 with sources and repeats: on these rows "
        "the wider tier chooses almost nothing (the coverage table below). Prompt/completion rows are the same for "
        "both tiers (there the repeats option does nothing).",
    ),
    Section(
        "Quality and capability",
        "How selective the plain-text copy tier is (suite v7 rows at 8K, token ids only)",
        "copy_tier_coverage_v7_cpu.csv",
        "`copy_tier_coverage.py`: the share of 64-token blocks the plain-text tier marks, per n-gram length and "
        "cap on repeats, with the evidence blocks' share among them (precision) and the share of the evidence it "
        "marks (recall); evidence is 0.37 of the blocks. The library's tier (3-grams, at most 4 repeats) marks 0.83 "
        "of the blocks with the sources alone and 0.99 with the repeats, more than a keep-0.5 budget, so it picks "
        "little: precision 0.43 and 0.38 against 0.37 at random. Longer n-grams are more precise (8-grams: 0.70) but "
        "find less of the evidence (0.57).",
    ),
    Section(
        "Quality and capability",
        "Copied n-grams as a score boost, per family (suite v7 rows at 8K, no training)",
        "query_score_ngram_v7_cpu.csv",
        "`query_score_probe.py ngram 3`, the probe before the library knob: the same copied-3-gram blocks ranked "
        "first among the scored blocks (so within the scorer's three quarters of the free budget) instead of kept "
        "as a tier. Prompt/completion: every evidence block 0.64, filler 0.23, recall 0.70, key-value 0.93. The "
        "tier (table above) keeps more.",
    ),
    Section(
        "Quality and capability",
        "Which part of a recall site the default drops (suite v7 rows at 8K, no training)",
        "recall_parts_v7_cpu.csv",
        "`recall_parts_probe.py`: per recall site (a quoted sentence and the words after it, one evidence span), "
        "whether the block holding its first token (the quote), the block holding its last token (the answer a "
        "copy reads) and every block of the site are kept; untrained SmolLM2 on the CPU, the same 8 v7 rows of 8K "
        "as the tables above, keep 0.5, 122 sites. Prompt/completion: the default keeps the quote's block and "
        "the answer's block alike (0.52 each; random 0.39) and the whole site 0.47 of the time (random 0.34). "
        "Plain text: at random's rate (0.39 against 0.43 for the whole site). The scorer finds recall sites only a "
        "little more often than random, and misses about half of them whole, not half of each. Reading every labelled position "
        "(`--max-queries 4096`) instead of 512 spread over them does not help (0.42 whole, 0.48 for the answer's "
        "block): the 512 are not what limits it.",
    ),
    Section(
        "Quality and capability",
        "Score dilation per family (suite v7 rows at 8K, no training)",
        "query_score_dilate_v7_cpu.csv",
        "`query_score_probe.py dilate 1`, what `SparsityConfig(score_dilation=1)` does: each block ranked by the "
        "best score within one block on either side, so a recall passage's quote would be kept with it. Same rows "
        "and setup as the tables above. Negative: the neighbours of filler peaks take the budget, so filler is "
        "kept at 0.37 (0.31) and every evidence block at 0.46 (the default 0.53); recall 0.44 (0.51), multi-key "
        "0.63 (0.80), variable tracking 0.62 (1.00); only key-value rises (0.79 against 0.64). Plain text: "
        "every family down. The knob stays, off by default.",
    ),
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
