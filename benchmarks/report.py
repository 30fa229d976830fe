"""Render results CSVs as markdown tables inside README.md / docs, between generated-region markers.

<!-- table: benchmarks/results/e2e_reference_path.csv -->
...generated, never typed by hand...
<!-- end table -->

python benchmarks/report.py README.md docs/*.md     # rewrite every region in place
python benchmarks/report.py --check README.md       # exit 1 if a region is stale (used by the tests)
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
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


def offload_table(rows: list[dict[str, str]]) -> str:
    """GPU peak, pinned host memory and step time per (T, config), against the exact stack with the same
    offload and tiling at the same T, and against plain `exact` (no offload) at the same T."""
    rows = sorted(rows, key=lambda r: int(r["seq_len"]))
    lines = [
        "| T | config | GPU peak alloc GiB | reserved GiB | pinned host GiB | step s | vs same stack exact "
        "| vs exact | timed steps | commit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def timed(r: dict[str, str]) -> str:
        # A single step without warm-up also pays for pinning the host pool and the first kernel compiles and
        # autotuning; after a warm-up through two layers (--warmup-layers few) only for pinning the pool.
        words = r.get("command", "").split()
        get = lambda flag, d: words[words.index(flag) + 1] if flag in words else d
        warm, steps = get("--warmup", "1"), get("--steps", "3")
        if warm == "0":
            return "1, no warm-up"
        return f"{steps} after {warm} warm-up" + (
            " (2 layers)" if get("--warmup-layers", "all") == "few" else ""
        )

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


def render(csv_path: Path) -> str:
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
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
    if {"config", "metric", "eval_len", "depth", "value"} <= set(rows[0]):
        return capability_table(rows)
    if {"selection", "feature", "bin", "kept_share"} <= set(rows[0]):
        return bias_table(rows)
    if {"config", "eval_len", "ppl"} <= set(rows[0]):
        return quality_table(rows)
    return generic_table(rows)


def rewrite(text: str) -> str:
    return REGION.sub(lambda m: m.group(1) + render(ROOT / m.group("csv")) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--check", action="store_true", help="report stale regions instead of rewriting")
    args = ap.parse_args(argv)
    stale = []
    for f in args.files:
        text = f.read_text(encoding="utf-8")
        new = rewrite(text)
        if new != text:
            stale.append(f)
            if not args.check:
                f.write_text(new, encoding="utf-8")
    if args.check and stale:
        print(
            "stale generated tables in: "
            + ", ".join(map(str, stale))
            + "; run python benchmarks/report.py FILES"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
