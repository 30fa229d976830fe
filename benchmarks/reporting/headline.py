"""The README's headline table (`HEADLINE`): `Headline` rows, each computed by one function over one CSV."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from lemo.config import SparsityConfig
from reporting.common import read
from reporting.speed_tables import timed

# ---------------------------------------------------------------------------------------------------------------
# The headline: lemo's default against the strongest exact stack measured and against dense LoRA at equal GPU time.


@dataclass(frozen=True)
class Headline:
    """One row of the headline table. `better` says which way wins: "lower" or "higher"."""

    against: str
    measure: str
    lemo: float
    base: float
    unit: str
    better: str
    csv: str
    # standard errors of lemo and base, for measures that are means of samples (a difference under 2 is a tie)
    se: tuple[float, float] | None = None

    def verdict(self) -> str:
        if self.se is not None:
            if abs(self.lemo - self.base) < 2 * math.hypot(*self.se):
                return "tie (within 2 standard errors)"
        elif abs(self.lemo / self.base - 1) <= 0.02:
            return "tie (within 2%)"
        wins = self.lemo < self.base if self.better == "lower" else self.lemo > self.base
        return "**lemo better**" if wins else "**lemo worse**"

    def cells(self) -> list[str]:
        def fmt(x: float) -> str:
            if self.unit == "tokens":
                return f"{int(x) // 1024}K"
            return f"{x:.2f}" if self.unit in ("", "s") else f"{x:.1f} {self.unit}"

        unit = " s" if self.unit == "s" else ""
        return [
            self.against,
            self.measure,
            fmt(self.lemo) + unit,
            fmt(self.base) + unit,
            f"{self.lemo / self.base:.2f}x",
            self.verdict(),
            f"`{self.csv}`",
        ]


def _ok(rows: list[dict[str, str]], **match: str) -> dict[str, str]:
    """The first row with status ok (where the CSV has one) whose columns equal `match`."""
    for r in rows:
        if r.get("status", "ok") == "ok" and all(r.get(k) == v for k, v in match.items()):
            return r
    raise LookupError(f"no row with {match}")


def _same_run(
    rows: list[dict[str, str]],
    configs: tuple[str, ...],
    base: str,
    lemo_at: Callable[[str], dict[str, str]] = lambda config: {},
    **at: str,
) -> tuple[dict, dict]:
    """(lemo row, `base` row) of the newest run (commit) that measured both, trying `configs` in order: a ratio
    is only ever taken within one run. `lemo_at(config)`: more columns only that config's row must match."""
    for config in configs:
        for commit in reversed(list(dict.fromkeys(r.get("commit", "") for r in rows))):
            try:
                lemo = _ok(rows, config=config, commit=commit, **lemo_at(config), **at)
                return lemo, _ok(rows, config=base, commit=commit, **at)
            except LookupError:
                continue
    raise LookupError(f"no run with {base} and one of {configs}")


# lemo's default on each stack, newest form first: `default+gc` (SparsityConfig() at the row's commit), the
# supervision selector with the trimmed last layer (the default from 2026-12-05), the random selection with the
# trimmed layer, then as measured before it.
DEFAULT_KEEP = str(SparsityConfig().keep_ratio)  # as the bench CSVs write it


def _default_keep(config: str) -> dict[str, str]:
    """`default*` rows at today's keep only: a run may time the default at other keeps too (gpu_liger.sh
    SHORT_KEEPS), and one made before the keep changed is the default's earlier form; the older names are earlier
    forms anyway, each at the keep it was run with."""
    return {"keep_ratio": DEFAULT_KEEP} if "default" in config else {}


LIGER_HEADLINE = (
    (("default+gc", "lemo-sup-trim+gc", "lemo-trim+gc", "lemo-random+gc"), "lemo alone"),
    (
        ("liger-default+gc", "liger-lemo-sup-trim+gc", "liger-lemo-trim+gc", "liger-lemo-random+gc"),
        "lemo on Liger",
    ),
)


def headline_liger(rows: list[dict[str, str]]) -> list[Headline]:
    """e2e_llama3_8b_liger.csv: the strongest exact stack, Liger-Kernel's (what TRL's `use_liger_kernel=True`
    gives), against lemo's default alone and on top of it at 32K, each against the Liger exact row of its own run,
    for each labelling measured: 2% of the positions labelled (prompt/completion) and plain text."""
    csv_name = "e2e_llama3_8b_liger.csv"
    out = []
    for completion, labels in (("0.02", "2% labelled"), ("0.0", "plain text")):
        at = {"seq_len": "32768", "completion": completion}
        for configs, who in LIGER_HEADLINE:
            try:
                lemo, liger = _same_run(rows, configs, "liger-exact", _default_keep, **at)
            except LookupError:
                continue  # not measured in this labelling
            card = lemo["gpu"].replace("NVIDIA ", "").split(" ")[0]
            against = f"Liger exact stack, 32K, {labels} ({who}: `{lemo['config']}`, {card})"
            for measure, column, unit in (
                ("step time", "median_step_s", "s"),
                ("GPU peak", "peak_alloc_gib", "GiB"),
            ):
                out.append(
                    Headline(
                        against, measure, float(lemo[column]), float(liger[column]), unit, "lower", csv_name
                    )
                )
    return out + _liger_long(rows, csv_name)


def _liger_long(rows: list[dict[str, str]], csv_name: str) -> list[Headline]:
    """128K under the 80 GB cap, offload and full tiling on both sides, one warm step each in one run. Only the
    step: offload holds both peaks to the same few GiB of the card."""
    at = {"seq_len": "131072", "completion": "0.02"}
    configs = ("liger-default+offload+tiled-attn",)
    try:
        lemo, liger = _same_run(rows, configs, "liger-exact+offload+tiled-attn", _default_keep, **at)
    except LookupError:
        return []
    card = lemo["gpu"].replace("NVIDIA ", "").split(" ")[0]
    against = f"Liger exact stack with offload and tiling, 128K, 2% labelled (`{lemo['config']}`, {card})"
    steps = float(lemo["median_step_s"]), float(liger["median_step_s"])
    return [Headline(against, "step time", *steps, "s", "lower", csv_name)]


def _suite_mean(
    rows: list[dict[str, str]], config: str, metric: str, form: str = "sup"
) -> tuple[float, float, int, str]:
    """(mean, standard error, seeds, steps) of `config`'s suite mean at 16K in `form` (sup: prompt/completion
    rows, text: plain text): per seed the mean over the task families, then over seeds."""
    per_seed: dict[str, list[float]] = {}
    steps = ""
    for r in rows:
        if r["config"] == config and r["form"] == form and r["metric"] == metric and r["eval_len"] == "16384":
            per_seed.setdefault(r["seed"], []).append(float(r["value"]))
            steps = r["steps"]
    means = [sum(v) / len(v) for v in per_seed.values()]
    m = sum(means) / len(means)
    sd = math.sqrt(sum((x - m) ** 2 for x in means) / (len(means) - 1)) if len(means) > 1 else float("nan")
    return m, sd / math.sqrt(len(means)), len(means), steps


def headline_suite(
    rows: list[dict[str, str]],
    csv_name: str = "suite_smollm2.csv",
    reference: str = "dense",
    label: str = "",
    lemo: str = "default",
    form: str = "sup",
    metrics: tuple[str, ...] = (),
) -> list[Headline]:
    """A suite CSV: held-out capability at 16K, lemo's default (`lemo`: the CSV's name for it) against dense LoRA
    (`reference`: `dense` at the same steps, or a `dense@N` snapshot at equal GPU time), in `form`. Plain text
    reports answer-token accuracy and perplexity: its exact match sits at the floor for every config, dense too.
    `metrics` keeps only those measures (all of the form's when empty)."""
    measures = {
        "sup": (
            ("exact_match", "exact match", "higher"),
            ("token_accuracy", "answer-token accuracy", "higher"),
        ),
        "text": (("token_accuracy", "answer-token accuracy", "higher"), ("ppl", "perplexity", "lower")),
    }[form]
    rows_name = {"sup": "prompt/completion rows", "text": "plain-text rows"}[form]

    # The seeds both ran: a seed fixes the training rows and eval questions, and a run resumed with more seeds of
    # dense LoRA alone (v14's 3-5) must not compare the default's seeds with other ones.
    def seeds_of(config: str) -> set[str]:
        return {r["seed"] for r in rows if r["config"] == config and r["form"] == form}

    common = seeds_of(lemo) & seeds_of(reference)
    rows = [r for r in rows if r["seed"] in common]
    out = []
    for metric, name, better in measures:
        if metrics and metric not in metrics:
            continue
        a, se_a, n, steps_a = _suite_mean(rows, lemo, metric, form)
        b, se_b, n_b, steps_b = _suite_mean(rows, reference, metric, form)
        when = (
            f"same steps ({steps_b})"
            if steps_a == steps_b
            else f"equal GPU time ({steps_b} against {steps_a} steps)"
        )
        seeds = f"{n} seeds" if n == n_b else f"{n} seeds (dense {n_b})"
        against = f"dense LoRA, {when}, {rows_name}, {seeds}"
        measure = f"held-out suite{label}, {name} at 16K"
        out.append(Headline(against, measure, a, b, "", better, csv_name, (se_a, se_b)))
    return out


def headline_offload(rows: list[dict[str, str]]) -> list[Headline]:
    """e2e_llama3_8b_offload.csv: both with offload and full tiling at 256K, each after the same warm-up."""
    warm = [
        r
        for r in rows
        if r.get("status") == "ok" and r["seq_len"] == "262144" and timed(r) != "1, no warm-up"
    ]
    lemo = _ok(warm, config="lemo+offload+tiled-attn")
    exact = _ok(warm, config="exact+offload+tiled-attn", commit=lemo["commit"])
    assert timed(exact) == timed(lemo), "a step is compared only with one timed the same way"
    steps = float(lemo["median_step_s"]), float(exact["median_step_s"])
    against = "HF exact stack with offload and tiling, 256K"
    return [Headline(against, "step time", *steps, "s", "lower", "e2e_llama3_8b_offload.csv")]


def headline_longest(rows: list[dict[str, str]]) -> list[Headline]:
    """e2e_llama3_8b_offload_longest.csv: the longest T under an 80 GB cap, offload on both sides."""
    last = {r["config"]: r for r in rows}
    lengths = float(last["lemo+offload"]["longest_ok_T"]), float(last["exact+offload"]["longest_ok_T"])
    against, measure = "HF exact stack with offload, 80 GB cap", "longest trainable context"
    return [Headline(against, measure, *lengths, "tokens", "higher", "e2e_llama3_8b_offload_longest.csv")]


# The suite run the headline reads: its CSV, the preset's name, and the dense snapshots nearest lemo's GPU time in
# prompt/completion and plain-text rows. v14 (suite_v14_sizing_chosen.json: every family in [0.4, 0.9] for dense LoRA
# in prompt/completion rows at 120 steps) is the newest suite run in full: H200, 08399e0, seeds 0-2, both forms.
# `default` is SparsityConfig() (the copy tier on prompt/completion rows); dense@84 is its equal GPU time to within
# 0.1 step, short of it (0.701x Liger exact's step at 16K on 2%-labelled rows, e2e_llama3_8b_copy3.csv: 84.1). In
# plain text the copy tier is off (copy_plain_text): 0.723x Liger exact's plain-text step at 16K (86.8 steps); dense@87
# has 0.2 step more, the nearest snapshot on the side that favours dense. The default was chosen on v7, not on v8-v14.
SUITE_RUN = ("suite_v14_smollm2.csv", " v14", "dense@84", "dense@87")


def suite_headlines(
    csv_name: str, tag: str, sup_time: str, text_time: str
) -> list[tuple[str, Callable[[list[dict[str, str]]], list[Headline]]]]:
    """The suite's four headline rows: prompt/completion at equal GPU time and at equal steps, plain text at equal
    GPU time (token accuracy: its exact match sits near the floor) and at equal steps, where perplexity's target
    is set (at most 1.01x)."""
    return [
        (csv_name, lambda rows: headline_suite(rows, csv_name, sup_time, tag)),
        (csv_name, lambda rows: headline_suite(rows, csv_name, "dense", tag, metrics=("exact_match",))),
        (
            csv_name,
            lambda rows: headline_suite(
                rows, csv_name, text_time, tag, form="text", metrics=("token_accuracy",)
            ),
        ),
        (csv_name, lambda rows: headline_suite(rows, csv_name, "dense", tag, form="text")),
    ]


# The front door's rows: the strongest exact stack (Liger's), the longest contexts, and capability on the held-out
# suite at equal GPU time. Superseded comparisons (HF's exact stack where Liger's was measured, `lemo data`'s own
# tasks, suite v1) stay in docs/results.md, each CSV's own section.
HEADLINE: list[tuple[str, Callable[[list[dict[str, str]]], list[Headline]]]] = [
    ("e2e_llama3_8b_liger.csv", headline_liger),
    ("e2e_llama3_8b_offload.csv", headline_offload),
    ("e2e_llama3_8b_offload_longest.csv", headline_longest),
    *suite_headlines(*SUITE_RUN),
]


def headline_table() -> str:
    lines = [
        "| against | measure | lemo default | baseline | lemo / baseline | verdict | CSV |",
        "|---|---|---|---|---|---|---|",
    ]
    gpus = []
    for csv_name, rows_of in HEADLINE:
        rows = read(csv_name)
        gpus += [r.get("gpu") or r.get("device") for r in rows]
        lines += ["| " + " | ".join(h.cells()) + " |" for h in rows_of(rows)]
    gpu = ", ".join(dict.fromkeys(g for g in gpus if g))
    return "\n".join(lines) + (
        f"\n\nMeasured on {gpu}, each ratio within one run. lemo's default is `SparsityConfig()`: the supervision "
        "selector keeping half of the blocks, in prompt/completion rows the blocks the answers copy 3-grams from, "
        "and the trimmed last layer (`default` in the suite's rows; in plain text the copy tier is off). The suite "
        "rows are v14, the newest preset and the hardest: dense LoRA scores 0.4-0.9 on every family of "
        "prompt/completion rows (120 steps, 3-6 seeds a config, each row on the seeds both sides ran). There, unlike on v7-v12 where the default tied or beat "
        "dense LoRA at equal steps, the default is below it at equal steps (0.91x); at equal GPU time it is above "
        "it in both forms (docs/capability.md). The "
        "speed rows (`default+gc` at keep 0.5) were timed before the copy tier "
        "joined the default; with it the step is 0.674x Liger exact's at 32K against 0.669x without "
        "(`e2e_llama3_8b_copy3.csv`). Equal GPU time takes the nearest dense snapshot: 84 steps for the 84.1 that "
        "lemo's 120 cost on prompt/completion rows, 87 (more than lemo's) for 86.8 on plain text. A row that names "
        "another config is the default's earlier form (keep 0.6), "
        "where today's was not measured, and the 256K and longest-context rows are the earlier default (random "
        "blocks, last layer whole) on HF's kernels. The speed rows use the Llama-3-8B shape "
        "with random weights, the quality rows SmolLM2-135M extended to 16K. Setup, commands and "
        "versions of each CSV: [docs/results.md](docs/results.md).\n"
    )


NAMED: dict[str, Callable[[], str]] = {"headline": headline_table}
