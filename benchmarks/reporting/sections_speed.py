"""docs/results.md's speed and memory sections, and the longest contexts': one per step-time CSV."""

from __future__ import annotations

from reporting.section import Section

E2E_ABOUT = (
    "LoRA r=8 on q/k/v/o, bf16, batch 1, one GPU, median of the timed steps after a warm-up step. Weights are "
    "random where the shape is a Llama (memory and time do not depend on their values). `exact` is the strongest "
    "exact stack built from public parts here: HF gradient checkpointing, SDPA flash attention and a loss computed "
    "in segments. `lora` is plain LoRA, `+gc` means on top of `exact`, `+sgc` checkpoints only the sparse layers, "
    "`longlora` uses LongLoRA's shifted sparse attention. `lemo-shared` is shared selection with the loss on kept "
    "positions, `lemo-random` adds label priority and random blocks (the default until 2026-12-05)."
)


def _sweep_notes(rows: list[dict[str, str]]) -> str:
    ok = {(r["seq_len"], r["config"]): float(r["median_step_s"]) for r in rows if r.get("status") == "ok"}
    lengths = sorted({int(t) for t, c in ok if c == "lemo-shared+gc" and (t, "exact") in ok})
    ratios = ", ".join(
        f"{ok[(str(t), 'lemo-shared+gc')] / ok[(str(t), 'exact')]:.2f}x at {t // 1024}K" for t in lengths
    )
    return f"lemo on the exact stack takes {ratios} of the exact stack's step time.\n"


SPEED_SECTIONS: list[Section] = [
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
        "Llama-3-8B shape: the default at keep 0.6, for suite v14's `copy3-keep60`",
        "e2e_llama3_8b_keep60.csv",
        "`liger-default+gc` at keep 0.6 (`SparsityConfig(keep_ratio=0.6)`: the supervision selector, the copy tier "
        "and the trimmed last layer on Liger) beside Liger exact at 16K and 32K, 2% labelled, in one H100 session "
        "(9afbe56) before the suite's seeds 3-5 ran on the same machine (`gpu_v14_levers.sh`). The ratios at 16K "
        "set `copy3-keep60`'s equal GPU time in the suite; the ones at 32K judge the step target.",
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
        "`--offload cpu`, beside Liger exact, in one H100 session at 7b5ef1a (32K, then 16K, each one model build): "
        "`liger-default-copy3+gc` and `+offload` are its sparse steps (keep 0.5), `-tail+gc` and `-tail+offload` its "
        "dense-tail steps (keep 1.0). Offload is exact, so the tail's quality is the dense tail's (1.0097x dense "
        "LoRA's perplexity on suite v7). At 32K a 15% tail without offload is 0.85 x 0.696 + 0.15 x 1.028 = 0.746x "
        "Liger exact's step at a peak of 0.97x (the tail's 28.1 GiB); with offload 0.85 x 0.728 + 0.15 x 1.068 = "
        "0.779x at a peak of 0.73x (21.1 GiB), under the default's 0.83x (24.2 GiB). At 16K: 0.770x and 0.811x. "
        "Its quality at equal GPU time: [capability.md](capability.md).",
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
]
