"""docs/results.md's sections of the CPU probes behind the suite: answer lengths and errors, and which blocks each
selector keeps on the untrained model."""

from __future__ import annotations

from reporting.section import Section

PROBE_SECTIONS: list[Section] = [
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
        "Quality and capability",
        "A sparse step's LoRA gradient against the dense step's (suite v14 rows at 4K, CPU)",
        "sparse_gradient_probe_v14_cpu.csv",
        "`sparse_gradient_probe.py`: SmolLM2 (YaRN x2) with LoRA r8 on q/k/v/o after dense LoRA steps on other v14 "
        "rows, then on each probe row one step of each config from the same weights: the cosine of its LoRA "
        "gradient with dense LoRA's, per layer, its norm and its loss on the completion against dense's. The "
        "configs are the suite's of the same names. At 4K a row's labelled and evidence blocks together fill more "
        "than a keep-0.5 budget (at 16K about half of it), so the evidence oracle, whose evidence tier comes "
        "before the labels, drops labelled blocks here: its row reads the 4K regime, not the suite's 16K.",
    ),
    Section(
        "Quality and capability",
        "A sparse step's LoRA gradient against the dense step's (suite v14 rows at 8K, CPU)",
        "sparse_gradient_probe_v14_8k_cpu.csv",
        "The same probe on v14 rows of 8K, with gradient checkpointing (exact; an 8K row needs it on a 24 GiB "
        "machine), fewer rows and warm-up steps, and three configs. At 8K a row's evidence and labelled blocks fit a "
        "keep-0.5 budget (56-59 of its 64 blocks on these rows), so the oracle keeps every answer, but they leave "
        "it little else; at 16K they fill about half of it. No standard errors: a pointer, not a measurement.",
    ),
]
