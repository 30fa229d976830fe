"""Render the results CSVs as markdown: docs/results.md whole, and the generated regions of README.md and docs.

A generated region is a table between two markers, never typed by hand:

<!-- table: benchmarks/results/e2e_reference_path.csv -->
...
<!-- end table -->

`<!-- table: headline -->` is the README's headline table (`HEADLINE`: rows from several CSVs, each row
computed by one function over one CSV).

python benchmarks/report.py                         # rewrite docs/results.md and every region of README.md, docs/
python benchmarks/report.py --check                 # exit 1 if anything is stale (tests/test_docs.py runs it)
python benchmarks/report.py README.md docs/plan.md  # only the regions of these files

Adding a results section: write (or reuse) a table function over the rows of one CSV, dispatch to it in
`render` by the CSV's columns, and append a `Section` to `SECTIONS`. Adding a headline row: a function from
the rows of one CSV to `Headline` rows, listed in `HEADLINE`.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "benchmarks/results"
RESULTS_PAGE = ROOT / "docs" / "results.md"
REGION = re.compile(r"(<!-- table: (?P<csv>\S+) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)


def _fmt(key: str, value: str) -> str:
    if value in ("", None):
        return "–"
    try:
        x = float(value)
    except ValueError:
        return value
    if key.endswith("_gib"):
        return f"{x:.1f}"
    if key == "tokens_per_s":
        return f"{x:,.0f}"
    if key.endswith("_s"):
        return f"{x:.3f}"
    return value


def e2e_table(rows: list[dict[str, str]]) -> str:
    """Memory and step time per (T, config), with the ratio to `lora` at the same T (rows ordered by T)."""
    rows = sorted(rows, key=lambda r: int(r["seq_len"]))  # stable: runs keep their order within one T
    base = {r["seq_len"]: r for r in rows if r["config"] == "lora" and r.get("status") == "ok"}
    # Ratios against `exact` with the same labels (a run may supervise only a completion: `--completion`).
    exact = {
        (r["seq_len"], r.get("completion") or "0.0"): r
        for r in rows
        if r["config"] == "exact" and r.get("status") == "ok"
    }
    lines = [
        "| T | config | keep ratio | MLP | peak alloc GiB | vs lora | peak reserved GiB | median step s | vs lora | vs exact | tokens/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = base.get(r["seq_len"])
        ok = r.get("status") == "ok"
        mem_ratio = f"{float(r['peak_alloc_gib']) / float(ref['peak_alloc_gib']):.2f}x" if ok and ref else "–"
        time_ratio = f"{float(r['median_step_s']) / float(ref['median_step_s']):.2f}x" if ok and ref else "–"
        ex = exact.get((r["seq_len"], r.get("completion") or "0.0"))
        exact_ratio = f"{float(r['median_step_s']) / float(ex['median_step_s']):.2f}x" if ok and ex else "–"
        mlp = r.get("mlp", "dense")
        if not ok:
            lines.append(
                f"| {r['seq_len']} | {r['config']} | {r['keep_ratio']} | {mlp} | {r['status']} | | | | | | |"
            )
            continue
        lines.append(
            f"| {r['seq_len']} | {r['config']} | {r['keep_ratio']} | {mlp} | {_fmt('peak_alloc_gib', r['peak_alloc_gib'])} "
            f"| {mem_ratio} | {_fmt('peak_reserved_gib', r['peak_reserved_gib'])} "
            f"| {_fmt('median_step_s', r['median_step_s'])} | {time_ratio} | {exact_ratio} "
            f"| {_fmt('tokens_per_s', r['tokens_per_s'])} |"
        )
    if any(r.get("predictor_ms_per_step") for r in rows):
        lines[0] += " predictor ms / step | predictor share of step | predictor MiB |"
        lines[1] += "---|---|---|"
        for i, r in enumerate(rows, start=2):
            if r.get("predictor_ms_per_step"):
                lines[i] += (
                    f" {float(r['predictor_ms_per_step']):.1f} | {float(r['predictor_share']) * 100:.2f}% "
                    f"| {float(r['predictor_param_mib']):.0f} |"
                )
            else:
                lines[i] += " – | – | – |"
    if any(float(r.get("completion") or 0) for r in rows):
        lines[0] += " positions with a label |"
        lines[1] += "---|"
        for i, r in enumerate(rows, start=2):
            c = float(r.get("completion") or 0)
            lines[i] += f" last {c:.0%} |" if c else " all |"
    liger = {
        (r["seq_len"], r.get("completion") or "0.0"): r
        for r in rows
        if r["config"] == "liger-exact" and r.get("status") == "ok"
    }
    if liger:  # the strongest exact stack: every row's step time against it, same T and labels
        lines[0] += " vs liger-exact |"
        lines[1] += "---|"
        for i, r in enumerate(rows, start=2):
            ref = liger.get((r["seq_len"], r.get("completion") or "0.0"))
            ok = r.get("status") == "ok" and ref
            lines[i] += f" {float(r['median_step_s']) / float(ref['median_step_s']):.2f}x |" if ok else " – |"
    if any(r.get("fraction_of_matmul") for r in rows):
        lines[0] += " model TFLOP/s | of matmul peak |"
        lines[1] += "---|---|"
        for i, r in enumerate(rows, start=2):
            if r.get("fraction_of_matmul"):
                lines[i] += (
                    f" {float(r['achieved_tflop_per_s']):.0f} | {float(r['fraction_of_matmul']) * 100:.0f}% |"
                )
            else:
                lines[i] += " – | – |"
    first = rows[0]
    commits = ", ".join(dict.fromkeys(r.get("commit", "?") for r in rows))
    weights = "real weights" if first.get("shape") == "smollm2" else "random init"
    prov = (
        f"\n{first.get('gpu', '?')}, torch {first.get('torch', '?')}, transformers {first.get('transformers', '?')}, "
        f"peft {first.get('peft', '?')}, commit {commits}, shape {first.get('shape', '?')} "
        f"({weights}), backend {first.get('backend', '?')}. Command: `{first.get('command', '?')}`\n"
    )
    if first.get("matmul_tflop_per_s"):
        prov += (
            f"\nModel TFLOP/s = (6·N·T + 6·L·d·T²) / step time, dense-equivalent (work skipped by lemo and weight "
            f"gradients not computed by LoRA still count); matmul peak = measured bf16 8192³ matmul, "
            f"{float(first['matmul_tflop_per_s']):.0f} TFLOP/s.\n"
        )
    return "\n".join(lines) + "\n" + prov


def quality_table(rows: list[dict[str, str]]) -> str:
    """One row per config: dense held-out perplexity at each evaluated length, and the change against `lora`."""
    lengths = sorted({int(r["eval_len"]) for r in rows})
    configs = list(dict.fromkeys(r["config"] for r in rows))
    ppl = {(r["config"], int(r["eval_len"])): float(r["ppl"]) for r in rows}
    meta = {r["config"]: r for r in rows}
    head = "| config | keep ratio | MLP | sparse layers | loss on | train loss first → last |"
    head += "".join(f" ppl @{n // 1024}K | vs lora |" for n in lengths)
    lines = [head, "|" + "---|" * (6 + 2 * len(lengths))]
    for c in configs:
        m = meta[c]
        trained = m.get("first_loss") not in ("", None)
        loss = (
            f"{float(m['first_loss']):.2f} → {float(m['last_loss']):.2f}" if trained else "(not fine-tuned)"
        )
        cells = [
            c,
            m.get("keep_ratio") or "–",
            m.get("mlp") or "–",
            m.get("sparse_layers", "auto" if c.startswith("lemo") else "–") or "–",
            m.get("loss_tokens", "all") or "–",
            loss,
        ]
        for n in lengths:
            v, ref = ppl.get((c, n)), ppl.get(("lora", n))
            cells.append(f"{v:.2f}" if v is not None else "–")
            cells.append(f"{(v / ref - 1) * 100:+.1f}%" if v is not None and ref else "–")
        lines.append("| " + " | ".join(cells) + " |")
    first = rows[0]
    commits = ", ".join(dict.fromkeys(r.get("commit", "?") for r in rows))
    prov = (
        f"\n{first.get('gpu', '?')}, torch {first.get('torch', '?')}, transformers {first.get('transformers', '?')}, "
        f"commit {commits}; {max(int(r.get('steps') or 0) for r in rows)} steps at {first.get('seq_len', '?')} tokens, "
        f"RoPE {first.get('rope', '?')}. Command: `{first.get('command', '?')}`\n"
    )
    return "\n".join(lines) + "\n" + prov


def recall_table(rows: list[dict[str, str]]) -> str:
    """Mean held-out recall per predictor kind and length (the per-layer rows stay in the CSV)."""
    means = [r for r in rows if r["layer"] == "mean"]
    lines = [
        "| predictor | steps | params / layer | eval length | recall | random | oracle mass kept | ms / layer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in means:
        lines.append(
            f"| {r['pool']} | {r['steps']} | {int(r['params_per_layer']):,} | {r['seq_len']} | {float(r['recall']):.3f} "
            f"| {float(r['random_recall']):.3f} | {float(r['mass_recall']):.3f} | {float(r['predictor_ms_per_layer']):.1f} |"
        )
    first = means[0] if means else rows[0]
    return (
        "\n".join(lines)
        + f"\n\n{first.get('device', '?')}, commit {first.get('commit', '?')}. Command: `{first.get('command', '?')}`\n"
    )


def diagnostics_table(rows: list[dict[str, str]]) -> str:
    lines = ["| setting | measure | value | share of positions |", "|---|---|---|---|"]
    for r in rows:
        share = f"{float(r['share']):.2f}" if r.get("share") else "–"
        lines.append(f"| {r['setting']} | {r['measure']} | {float(r['value']):.3f} | {share} |")
    first = rows[0]
    return "\n".join(lines) + (
        f"\n\n{first.get('device', '?')}, torch {first.get('torch', '?')}, transformers {first.get('transformers', '?')}, "
        f"commit {first.get('commit', '?')}. Command: `{first.get('command', '?')}`\n"
    )


def _tokens(value: str) -> str:
    return f"{int(value) // 1024}K" if value not in ("", None) and int(value) else "none"


def longest_table(rows: list[dict[str, str]]) -> str:
    """Longest trainable T per config under the cap (a later row for the same config supersedes an earlier one)."""
    last = {r["config"]: r for r in rows}
    exact = last.get("exact")
    lora = last.get("lora")
    lines = [
        "| config | keep ratio | longest T | first OOM | vs lora | vs exact | peak alloc GiB at longest | one step s (incl. warm-up) |",
        "|---|---|---|---|---|---|---|---|",
    ]

    def ratio(r: dict[str, str], ref: dict[str, str] | None) -> str:
        if ref is None or not int(ref["longest_ok_T"]) or not int(r["longest_ok_T"]):
            return "–"
        return f"{int(r['longest_ok_T']) / int(ref['longest_ok_T']):.2f}x"

    for c, r in last.items():
        lines.append(
            f"| {c} | {r['keep_ratio']} | {_tokens(r['longest_ok_T'])} | {_tokens(r['first_oom_T'])} "
            f"| {ratio(r, lora)} | {ratio(r, exact)} | {_fmt('peak_alloc_gib', r['peak_alloc_gib'])} "
            f"| {_fmt('median_step_s', r['median_step_s'])} |"
        )
    first = rows[0]
    commits = ", ".join(dict.fromkeys(r.get("commit", "?") for r in last.values()))
    return "\n".join(lines) + (
        f"\n\nCap {float(first['cap_gib']):.1f} GiB (80 GB) as a per-process memory fraction on {first.get('gpu', '?')}; "
        f"search resolution 8K; shape {first.get('shape', '?')} (random init); torch {first.get('torch', '?')}, "
        f"transformers {first.get('transformers', '?')}; commits {commits}. Command: `{first.get('command', '?')}`\n"
    )


def _equal_time():
    """benchmarks/quality/equal_time.py, loaded by path (benchmarks/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "equal_time", ROOT / "benchmarks" / "quality" / "equal_time.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def capability_table(rows: list[dict[str, str]]) -> str:
    """One row per config: retrieval (mean over depths) at each length, perplexity, and GPU time."""
    et = _equal_time()
    ratios = et.step_ratios()
    mean = {
        (r["config"], r["metric"], int(r["eval_len"])): float(r["value"]) for r in rows if r["depth"] == "all"
    }
    meta = {r["config"]: r for r in rows}
    lengths = sorted({int(r["eval_len"]) for r in rows if r["metric"] == "retrieval_teacher"})
    ppl_len = max(int(r["eval_len"]) for r in rows if r["metric"] == "ppl")
    head = "| config | data | steps | step time vs exact | GPU time (exact steps) |"
    head += "".join(f" retrieval @{n // 1024}K |" for n in lengths)
    head += f" greedy @{lengths[-1] // 1024}K | ppl @{ppl_len // 1024}K |"
    lines = [head, "|" + "---|" * (5 + len(lengths) + 2)]
    for c, m in meta.items():
        steps = int(m["steps"]) if m["sparsity"] != "untrained" else 0
        _, name, _ = et.config_name(c)
        bench = et.BENCH_CONFIG.get(name)
        ratio = ratios.get(bench) if bench else None
        t = et.gpu_time(c, steps, ratios) if steps else 0.0
        cells = [
            c,
            m["data"],
            str(steps),
            f"{ratio:.3f}x" if ratio else "–",
            f"{t:.1f}" if t is not None else "–",
        ]
        cells += [f"{mean[(c, 'retrieval_teacher', n)]:.2f}" for n in lengths]
        cells += [f"{mean[(c, 'retrieval_greedy', lengths[-1])]:.2f}", f"{mean[(c, 'ppl', ppl_len)]:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    first = rows[0]
    n = int(next(r["n"] for r in rows if r["metric"] == "retrieval_teacher" and r["depth"] == "all"))
    commits = ", ".join(dict.fromkeys(r.get("commit", "?") for r in rows))
    prov = (
        f"\nRetrieval: multi-key (16 keys), teacher-forced exact match unless marked greedy, mean of {n} samples "
        f"over 5 depths per length, eval names and *Persuasion* filler (never trained on). {first.get('gpu', '?')}, "
        f"torch {first.get('torch', '?')}, transformers {first.get('transformers', '?')}, commit {commits}; "
        f"training rows of {first.get('seq_len', '?')} tokens. Step-time ratios: Llama-3-8B shape at 16K with the "
        f"same labels (`{et.SPEED_CSV.name}`). Commands: "
        + "; ".join(f"`{c}`" for c in dict.fromkeys(r["command"] for r in rows))
        + "\n"
    )
    return "\n".join(lines) + "\n" + prov


def bias_table(rows: list[dict[str, str]]) -> str:
    """Kept share per selection, by region of the row and by position decile."""
    sels = list(dict.fromkeys(r["selection"] for r in rows))
    cols = [("region", "answers"), ("region", "needle"), ("region", "filler")]
    cols += [("position decile", str(d)) for d in range(10)]
    share = {(r["selection"], r["feature"], r["bin"]): float(r["kept_share"]) for r in rows}
    head = "| selection | answers | needles | filler |" + "".join(f" pos {d}/10 |" for d in range(10))
    lines = [head, "|" + "---|" * (1 + len(cols))]
    for s in sels:
        lines.append(
            "| " + " | ".join([s, *(f"{share.get((s, f, b), float('nan')):.2f}" for f, b in cols)]) + " |"
        )
    first = rows[0]
    prov = (
        f"\nShare of (block, sparse layer) pairs kept, keep ratio {first['keep_ratio']}, {first['rows']} training rows "
        f"of {first['seq_len']} tokens, SmolLM2 with YaRN x2, {first['gpu']}, commit {first['commit']}.\n"
    )
    return "\n".join(lines) + "\n" + prov


def _exact_twin(config: str) -> str:
    """The exact config with the same memory stack: lemo+offload+tiled -> exact+offload+tiled."""
    return "exact" if config == "lemo-random+gc" else config.replace("lemo", "exact", 1)


def timed(r: dict[str, str]) -> str:
    """How a bench row was timed, read from its command. A single step without warm-up also pays for pinning the
    host pool and the first kernel compiles and autotuning; after a warm-up through two layers
    (--warmup-layers few) only for pinning the pool."""
    words = r.get("command", "").split()

    def get(flag: str, default: str) -> str:
        return words[words.index(flag) + 1] if flag in words else default

    warm, steps = get("--warmup", "1"), get("--steps", "3")
    if warm == "0":
        return "1, no warm-up"
    return f"{steps} after {warm} warm-up" + (" (2 layers)" if get("--warmup-layers", "all") == "few" else "")


def offload_table(rows: list[dict[str, str]]) -> str:
    """GPU peak, pinned host memory and step time per (T, config), against the exact stack with the same
    offload and tiling at the same T, and against plain `exact` (no offload) at the same T."""
    rows = sorted(rows, key=lambda r: int(r["seq_len"]))
    lines = [
        "| T | config | GPU peak alloc GiB | reserved GiB | pinned host GiB | step s | vs same stack exact "
        "| vs exact | timed steps | commit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    # Rows are compared only with rows timed the same way: a cold step is not set against a warm one.
    ok = {(r["seq_len"], r["config"], timed(r)): r for r in rows if r.get("status") == "ok"}

    def ratio(r: dict[str, str], ref: dict[str, str] | None) -> str:
        if ref is None or ref is r:
            return "–"
        return f"{float(r['median_step_s']) / float(ref['median_step_s']):.3f}x"

    for r in rows:
        if r.get("status") != "ok":
            lines.append(
                f"| {r['seq_len']} | {r['config']} | {r['status']} | | | | | | {r.get('commit', '?')} |"
            )
            continue
        twin = ok.get((r["seq_len"], _exact_twin(r["config"]), timed(r)))
        lines.append(
            f"| {int(r['seq_len']) // 1024}K | {r['config']} | {_fmt('peak_alloc_gib', r['peak_alloc_gib'])} "
            f"| {_fmt('peak_reserved_gib', r['peak_reserved_gib'])} | {_fmt('host_pool_gib', r.get('host_pool_gib', ''))} "
            f"| {float(r['median_step_s']):.2f} | {ratio(r, twin)} | {ratio(r, ok.get((r['seq_len'], 'exact', timed(r))))} "
            f"| {timed(r)} | {r.get('commit', '?')} |"
        )
    first = rows[0]
    keep = next((r["keep_ratio"] for r in rows if r["config"].startswith("lemo")), "?")
    return "\n".join(lines) + (
        f"\n\n{first.get('gpu', '?')}, torch {first.get('torch', '?')}, transformers {first.get('transformers', '?')}, "
        f"peft {first.get('peft', '?')}, shape {first.get('shape', '?')} (random init), GPU capped at "
        f"{first.get('cap_gib', '?')} GiB, keep ratio {keep} for lemo rows. Command of the "
        f"first row: `{first.get('command', '?')}`\n"
    )


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


def _mean_se(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, float("nan")
    return m, math.sqrt(sum((x - m) ** 2 for x in values) / (len(values) - 1) / len(values))


SUITE_FAMILIES = ("multikey", "multivalue", "vartrack", "kv", "recall", "count")


def suite_table(rows: list[dict[str, str]]) -> str:
    """The capability suite at 16K: per config and form, each family's exact match (mean +- standard error over
    seeds), the suite mean (per seed over families, then over seeds) in exact match and answer-token accuracy,
    and held-out perplexity."""
    at16 = [r for r in rows if r["eval_len"] == "16384"]
    keys = sorted(
        {(r["config"], r["form"], r["steps"]) for r in at16}, key=lambda k: (k[1], k[0] != "dense", k)
    )
    head = [
        "config",
        "form",
        "steps",
        "seeds",
        *SUITE_FAMILIES,
        "suite exact match",
        "suite token accuracy",
        "ppl",
    ]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for config, form, steps in keys:
        mine = [r for r in at16 if (r["config"], r["form"], r["steps"]) == (config, form, steps)]
        seeds = sorted({r["seed"] for r in mine})

        def cell(metric: str, family: str | None, mine=mine, seeds=seeds) -> str:
            per_seed = []
            for seed in seeds:
                vals = [float(r["value"]) for r in mine if r["seed"] == seed and r["metric"] == metric
                        and (family is None or r["family"] == family)]  # fmt: skip
                if vals:
                    per_seed.append(sum(vals) / len(vals))
            if not per_seed:
                return "–"
            m, se = _mean_se(per_seed)
            return f"{m:.2f}" if math.isnan(se) else f"{m:.2f} ± {se:.2f}"

        fams = [cell("exact_match", f) for f in SUITE_FAMILIES]
        row = [config, form, steps, str(len(seeds)), *fams, cell("exact_match", None),
               cell("token_accuracy", None), cell("ppl", None)]  # fmt: skip
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"


def suite_bias_table(rows: list[dict[str, str]]) -> str:
    """Per selector and form: the share of evidence blocks and of filler blocks kept, averaged over the sparse
    layers (with the range over layers)."""
    keys = list(dict.fromkeys((r["selector"], r["form"]) for r in rows))
    out = ["| selector | form | evidence kept | filler kept | evidence kept, layer range | layers | rows | length |",
           "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for selector, form in keys:
        mine = [r for r in rows if (r["selector"], r["form"]) == (selector, form)]
        ev = [float(r["kept_evidence"]) for r in mine]
        fi = [float(r["kept_filler"]) for r in mine]
        out.append(f"| {selector} | {form} | {sum(ev) / len(ev):.2f} | {sum(fi) / len(fi):.2f} | "
                   f"{min(ev):.2f}-{max(ev):.2f} | {len(mine)} | {mine[0]['rows']} | {mine[0]['seq_len']} |")  # fmt: skip
    return "\n".join(out) + "\n"


def render(csv_path: Path) -> str:
    with csv_path.open(newline="") as fh:
        return table(list(csv.DictReader(fh)))


def table(rows: list[dict[str, str]]) -> str:
    """The table for a CSV's rows, chosen by its columns."""
    if not rows:
        return "(no rows yet)\n"
    if {"config", "longest_ok_T", "cap_gib"} <= set(rows[0]):
        return longest_table(rows)
    if {"config", "seq_len", "peak_alloc_gib"} <= set(rows[0]) and any(r.get("host_pool_gib") for r in rows):
        return offload_table(rows)
    if {"config", "seq_len", "peak_alloc_gib"} <= set(rows[0]):
        return e2e_table(rows)
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
    return generic_table(rows)


def read(csv_name: str) -> list[dict[str, str]]:
    with (ROOT / RESULTS / csv_name).open(newline="") as fh:
        return list(csv.DictReader(fh))


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
    lemo_at: dict[str, str] | None = None,
    **at: str,
) -> tuple[dict, dict]:
    """(lemo row, `base` row) of the newest run (commit) that measured both, trying `configs` in order: a ratio
    is only ever taken within one run. `lemo_at`: more columns only the lemo row must match."""
    for config in configs:
        for commit in reversed(list(dict.fromkeys(r.get("commit", "") for r in rows))):
            try:
                lemo = _ok(rows, config=config, commit=commit, **(lemo_at or {}), **at)
                return lemo, _ok(rows, config=base, commit=commit, **at)
            except LookupError:
                continue
    raise LookupError(f"no run with {base} and one of {configs}")


# lemo's default on each stack, newest form first: `default+gc` (SparsityConfig() at the row's commit), the
# supervision selector with the trimmed last layer (the default from 2026-12-05), the random selection with the
# trimmed layer, then as measured before it.
DEFAULT_KEEP = "0.6"  # SparsityConfig().keep_ratio as the bench CSVs write it (tests/test_docs.py checks)
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
                # the product's keep only: a run may time the default at other keeps too (SHORT_KEEPS)
                lemo, liger = _same_run(rows, configs, "liger-exact", {"keep_ratio": DEFAULT_KEEP}, **at)
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
    return out


def _suite_mean(rows: list[dict[str, str]], config: str, metric: str) -> tuple[float, float, int, str]:
    """(mean, standard error, seeds, steps) of `config`'s suite mean at 16K (prompt/completion rows): per seed
    the mean over the task families, then over seeds."""
    per_seed: dict[str, list[float]] = {}
    steps = ""
    for r in rows:
        if (
            r["config"] == config
            and r["form"] == "sup"
            and r["metric"] == metric
            and r["eval_len"] == "16384"
        ):
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
) -> list[Headline]:
    """A suite CSV: held-out capability at 16K, lemo's default (`lemo`: the CSV's name for it) against dense LoRA
    (`reference`: `dense` at the same steps, or a `dense@N` snapshot at equal GPU time)."""
    out = []
    for metric, measure in (
        ("exact_match", f"held-out suite{label}, exact match at 16K"),
        ("token_accuracy", f"held-out suite{label}, answer-token accuracy at 16K"),
    ):
        a, se_a, n, steps_a = _suite_mean(rows, lemo, metric)
        b, se_b, _, steps_b = _suite_mean(rows, reference, metric)
        when = (
            f"same steps ({steps_b})"
            if steps_a == steps_b
            else f"equal GPU time ({steps_b} against {steps_a} steps)"
        )
        against = f"dense LoRA, {when}, prompt/completion rows, {n} seeds"
        out.append(Headline(against, measure, a, b, "", "higher", csv_name, (se_a, se_b)))
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
    return [
        Headline(
            "HF exact stack with offload and tiling, 256K",
            "step time",
            float(lemo["median_step_s"]),
            float(exact["median_step_s"]),
            "s",
            "lower",
            "e2e_llama3_8b_offload.csv",
        )
    ]


def headline_longest(rows: list[dict[str, str]]) -> list[Headline]:
    """e2e_llama3_8b_offload_longest.csv: the longest T under an 80 GB cap, offload on both sides."""
    last = {r["config"]: r for r in rows}
    lemo, exact = last["lemo+offload"], last["exact+offload"]
    return [
        Headline(
            "HF exact stack with offload, 80 GB cap",
            "longest trainable context",
            float(lemo["longest_ok_T"]),
            float(exact["longest_ok_T"]),
            "tokens",
            "higher",
            "e2e_llama3_8b_offload_longest.csv",
        )
    ]


# The front door's rows: the strongest exact stack (Liger's), the longest contexts, and capability on the held-out
# suite at equal GPU time. Superseded comparisons (HF's exact stack where Liger's was measured, `lemo data`'s own
# tasks, suite v1) stay in docs/results.md, each CSV's own section.
HEADLINE: list[tuple[str, Callable[[list[dict[str, str]]], list[Headline]]]] = [
    ("e2e_llama3_8b_liger.csv", headline_liger),
    ("e2e_llama3_8b_offload.csv", headline_offload),
    ("e2e_llama3_8b_offload_longest.csv", headline_longest),
    (
        "suite_v3_smollm2.csv",
        # the v3 run's `supervision` is today's default; its `default` is the one before (random blocks)
        lambda rows: headline_suite(rows, "suite_v3_smollm2.csv", "dense@49", " v3", lemo="supervision"),
    ),
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
        "selector and the trimmed last layer (`supervision` in the suite, `*-sup-trim+gc` in the speed rows); a row "
        "that names another config is the default's earlier form, where today's was not measured, and the offload "
        "rows are the earlier default (random blocks, last layer whole). The speed rows use the Llama-3-8B shape "
        "with random weights, the quality rows SmolLM2-135M extended to 16K. Setup, commands and "
        "versions of each CSV: [docs/results.md](docs/results.md).\n"
    )


NAMED: dict[str, Callable[[], str]] = {"headline": headline_table}


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
        "to saturating. On the held-out capability suite ([suite.md](suite.md)) the default is below dense LoRA "
        "at the same steps (headline)."
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


def results_page() -> str:
    out = [
        "# Results",
        "",
        "<!-- generated by benchmarks/report.py from benchmarks/results/*.csv; edit the script, not this page -->",
        "",
        "Every table is generated from a CSV in `benchmarks/results/`, written by the run it describes, with the GPU, "
        "versions, commit and command under the table. `tests/test_docs.py` fails when a table is stale. The "
        "capability suite's tables are in [suite.md](suite.md).",
        "",
        "## Headline",
        "",
        "<!-- table: headline -->",
        headline_table().replace("[docs/results.md](docs/results.md)", "the sections below")
        + "<!-- end table -->",
    ]
    group = None
    for sec in SECTIONS:
        if not (ROOT / RESULTS / sec.csv).is_file():
            continue
        if sec.group != group:
            group = sec.group
            out += ["", f"## {group}"] + (["", GROUPS[group]] if group in GROUPS else [])
        out += ["", f"### {sec.title}", "", sec.about, "", f"<!-- table: {RESULTS}/{sec.csv} -->"]
        rows = read(sec.csv)
        out.append(((sec.table or table)(rows) if rows else "(no rows yet)\n") + "<!-- end table -->")
        out += [f"\n![{Path(f).stem.replace('_', ' ')}](../{RESULTS}/{f})" for f in sec.figures]
        if sec.notes is not None:
            out += ["", sec.notes(rows).rstrip("\n")]
    return "\n".join(out) + "\n"


def rewrite(text: str, *, relative_to: Path = ROOT) -> str:
    def region(m: re.Match[str]) -> str:
        name = m.group("csv")
        if name in NAMED:
            body = NAMED[name]()
            if relative_to != ROOT:  # links in the headline are written from the repository root
                body = body.replace("](docs/", "](")
            return m.group(1) + body + m.group(4)
        return m.group(1) + render(ROOT / name) + m.group(4)

    return REGION.sub(region, text)


def _all_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md") if p != RESULTS_PAGE)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path, help="default: README.md, docs/*.md and docs/results.md")
    ap.add_argument("--check", action="store_true", help="report stale regions instead of rewriting")
    args = ap.parse_args(argv)
    stale = []
    files = [f.resolve() for f in args.files] or [*_all_files(), RESULTS_PAGE]
    for f in files:
        text = f.read_text(encoding="utf-8") if f.exists() else ""
        new = results_page() if f == RESULTS_PAGE else rewrite(text, relative_to=f.parent)
        if new != text:
            stale.append(f)
            if not args.check:
                f.write_text(new, encoding="utf-8")
    if args.check and stale:
        print(
            "stale generated tables in: "
            + ", ".join(str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else str(f) for f in stale)
            + "; run python benchmarks/report.py"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
