"""A CSV's table, chosen by its columns (`table`), and the tables that fit no kind: generic, the quick start."""

from __future__ import annotations

import csv
from pathlib import Path

from reporting.common import _fmt
from reporting.quality_tables import (
    bias_table,
    capability_table,
    diagnostics_table,
    gradient_probe_table,
    quality_table,
    recall_table,
    suite_bias_table,
    suite_table,
    targets_table,
)
from reporting.speed_tables import e2e_table, longest_table, offload_table, peak_owners_table, profile_table


def generic_table(rows: list[dict[str, str]]) -> str:
    keys = list(rows[0])
    head = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n"
    return head + "".join("| " + " | ".join(_fmt(k, r[k]) for k in keys) + " |\n" for r in rows)


def quickstart_table(rows: list[dict[str, str]]) -> str:
    """The README's quick start, timed by `make trial` in a fresh venv: wall time and perplexity before/after."""
    lines = [
        "| when | machine | CPU cores | load at the end | torch | tokens per row × steps | wall time | CPU time "
        "| held-out perplexity before → after | result |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        secs = float(r["seconds"])
        shape = f"{r['seq_len']} × {r['steps']}" if r.get("steps") else "–"
        ppl = f"{float(r['ppl_before']):.2f} → {float(r['ppl_after']):.2f}" if r.get("ppl_after") else "–"
        lines.append(
            f"| {r['timestamp'][:10]} | {r['cpu']} | {r['cores']} | {r.get('load_1min') or '–'} | {r['torch']} "
            f"| {shape} "
            f"| {int(secs // 60)} min {secs % 60:.0f} s | {r['cpu_seconds'] + ' s' if r.get('cpu_seconds') else '–'} | {ppl} | {r['status']} |"
        )
    commits = ", ".join(dict.fromkeys(r.get("commit", "?") for r in rows))
    return "\n".join(lines) + (
        f"\n\nLoad: the machine's 1-minute load average when the run ended (other work on a shared machine "
        f"slows it). CPU time: user and system seconds of the run, over all cores. Commit {commits}. Command (the README's quick start, run as written by "
        f"`dev/new_user_trial.sh`): "
        f"`{rows[-1]['command']}`\n"
    )


def render(csv_path: Path) -> str:
    with csv_path.open(newline="") as fh:
        return table(list(csv.DictReader(fh)))


def table(rows: list[dict[str, str]]) -> str:
    """The table for a CSV's rows, chosen by its columns."""
    if not rows:
        return "(no rows yet)\n"
    if {"config", "family", "step_ms", "idle_share"} <= set(rows[0]):
        return profile_table(rows)
    if {"config", "rank", "owner", "gib"} <= set(rows[0]):
        return peak_owners_table(rows)
    if {"config", "longest_ok_T", "cap_gib"} <= set(rows[0]):
        return longest_table(rows)
    # The Liger side by side keeps its kind when long offload rows join it: its ratios are against Liger's exact.
    liger = any(r.get("config", "").startswith("liger-") for r in rows)
    if (
        {"config", "seq_len", "peak_alloc_gib"} <= set(rows[0])
        and any(r.get("host_pool_gib") for r in rows)
        and not liger
    ):
        return offload_table(rows)
    if {"config", "seq_len", "peak_alloc_gib"} <= set(rows[0]):
        return e2e_table(rows)
    if {"config", "layer", "measure", "value", "warm_steps"} <= set(rows[0]):
        return gradient_probe_table(rows)
    if {"setting", "measure", "value"} <= set(rows[0]):
        return diagnostics_table(rows)
    if {"layer", "pool", "recall"} <= set(rows[0]):
        return recall_table(rows)
    if {"config", "form", "seed", "family", "metric", "value"} <= set(rows[0]):
        return suite_table(rows)
    if {"selector", "kept_evidence", "kept_filler"} <= set(rows[0]):
        return suite_bias_table(rows)
    if {"config", "metric", "eval_len", "depth", "value"} <= set(rows[0]):
        return capability_table(rows)
    if {"selection", "feature", "bin", "kept_share"} <= set(rows[0]):
        return bias_table(rows)
    if {"config", "eval_len", "ppl"} <= set(rows[0]):
        return quality_table(rows)
    if {"seconds", "cores", "ppl_before"} <= set(rows[0]):
        return quickstart_table(rows)
    if {"target", "measure", "limit", "met"} <= set(rows[0]):
        return targets_table(rows)
    return generic_table(rows)
