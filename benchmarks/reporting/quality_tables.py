"""Tables of the quality CSVs: perplexity, predictor recall, diagnostics, retrieval, selection bias, the suite."""

from __future__ import annotations

import math

from reporting.common import ROOT


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


def gradient_probe_table(rows: list[dict[str, str]]) -> str:
    """`sparse_gradient_probe.py`: per config, the cosine of its LoRA gradient with dense LoRA's (the whole
    adapter, and the mean over the lower and the upper half of the layers with the lowest layer's), its norm
    against dense's, and its loss on the completion against dense's."""
    value = {(r["config"], r["layer"], r["measure"]): float(r["value"]) for r in rows}
    layers = sorted({int(r["layer"]) for r in rows if r["layer"].isdigit()})
    half = len(layers) // 2
    out = ["| config | cos, whole adapter | cos, lower layers (mean) | cos, upper layers (mean; lowest) | "
           "norm / dense's | loss / dense's |", "|---|---|---|---|---|---|"]  # fmt: skip
    for config in dict.fromkeys(r["config"] for r in rows):
        cos = [value[(config, str(k), "cos")] for k in layers]
        lower, upper = cos[:half], cos[half:]
        out.append(
            f"| {config} | {value[(config, 'all', 'cos')]:.2f} | {sum(lower) / len(lower):.2f} | "
            f"{sum(upper) / len(upper):.2f}; {min(upper):.2f} | {value[(config, 'all', 'norm_ratio')]:.2f} | "
            f"{value[(config, '-', 'loss_ratio')]:.3f} |"
        )
    first = rows[0]
    return "\n".join(out) + (
        f"\n\n{first['rows']} rows of {first['seq_len']} tokens after {first['warm_steps']} dense LoRA steps, "
        f"{first.get('gpu', '?')}, torch {first.get('torch', '?')}, commit {first.get('commit', '?')}. "
        f"Command: `{first.get('command', '?')}`\n"
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
    return _suite_table([r for r in rows if r["eval_len"] == "16384"], length=False)


def suite_own_length_table(rows: list[dict[str, str]]) -> str:
    """As `suite_table`, each run at the length it was trained at (`seq_len`), with that length as a column: runs
    trained at several lengths, each scored at its own."""
    return _suite_table([r for r in rows if r["eval_len"] == r.get("seq_len")], length=True)


def _trained_at(row: dict[str, str]) -> int:
    """A suite row's training length (rows before the column was written trained at 16K)."""
    return int(row.get("seq_len") or 16384)


def _suite_table(at: list[dict[str, str]], length: bool) -> str:
    keys = sorted(
        {(r["config"], r["form"], r["steps"], _trained_at(r)) for r in at},
        key=lambda k: (k[1], k[3], k[0] != "dense", k),
    )
    head = [
        "config",
        "form",
        *(["length"] if length else []),
        "steps",
        "seeds",
        *SUITE_FAMILIES,
        "suite exact match",
        "suite token accuracy",
        "ppl",
    ]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for config, form, steps, seq_len in keys:
        mine = [
            r
            for r in at
            if (r["config"], r["form"], r["steps"], _trained_at(r)) == (config, form, steps, seq_len)
        ]
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
        lead = [config, form, *([f"{seq_len // 1024}K"] if length else []), steps, str(len(seeds))]
        row = [*lead, *fams, cell("exact_match", None), cell("token_accuracy", None), cell("ppl", None)]
        out.append("| " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"


def suite_bias_table(rows: list[dict[str, str]]) -> str:
    """Per selector and form: the share of evidence blocks and of filler blocks kept, averaged over the sparse
    layers (with the range over layers); per family too where the rows have one (`suite_bias.py --by-family`)."""
    if "family" in rows[0]:
        return _suite_bias_family_table(rows)
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


def _suite_bias_family_table(rows: list[dict[str, str]]) -> str:
    """Per selector and form: each family's evidence blocks kept ("all": every evidence block), and the filler kept,
    averaged over the sparse layers; the evidence blocks of each family (over the layers' first) in the header."""
    families = list(dict.fromkeys(r["family"] for r in rows))
    keys = list(dict.fromkeys((r["selector"], r["form"]) for r in rows))
    first = rows[0]["layer"]
    blocks = {
        r["family"]: r["evidence_blocks"]
        for r in rows
        if r["layer"] == first and (r["selector"], r["form"]) == keys[0]
    }
    head = [f"{f} ({blocks.get(f, '?')})" for f in families]
    out = ["| selector | form | " + " | ".join(head) + " | filler | rows | length |",
           "|---|---|" + "---|" * (len(families) + 3)]  # fmt: skip
    for selector, form in keys:
        mine = [r for r in rows if (r["selector"], r["form"]) == (selector, form)]

        def mean(column: str, family: str, mine=mine) -> float:
            vals = [float(r[column]) for r in mine if r["family"] == family and r[column] != ""]
            return sum(vals) / len(vals) if vals else float("nan")

        cells = [f"{mean('kept_evidence', f):.2f}" for f in families]
        out.append(f"| {selector} | {form} | " + " | ".join(cells)
                   + f" | {mean('kept_filler', 'all'):.2f} | {mine[0]['rows']} | {mine[0]['seq_len']} |")  # fmt: skip
    return "\n".join(out) + "\n"


TARGET_LIMITS = {"equal steps": ">= {}x", "perplexity": "<= {}x", "step": "<= {}x", "oracle": ">= {}"}
FORM_NAMES = {"sup": "prompt/completion", "text": "plain text"}


def targets_table(rows: list[dict[str, str]]) -> str:
    """Issue 19's targets on one suite run (benchmarks/quality/suite_targets.py): one row per target, form and
    metric, the measure as the target states it (a ratio, or a difference with its standard errors)."""
    lines = [
        "| target | form | metric | config | against | measure | limit | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        value, mine, theirs = float(r["measure"]), float(r["config_mean"]), float(r["against_mean"])
        if r["target"] in ("equal steps", "perplexity", "step"):
            measure = f"{value:.3f}x ({mine:.3f} / {theirs:.3f})"
        else:
            se = float(r["diff_se"])
            errors = f", {abs(value) / se:.1f} SE" if se > 0 else ""
            measure = f"{value:+.3f} ({mine:.3f} - {theirs:.3f}{errors})"
        limit = TARGET_LIMITS.get(r["target"], "> 0 by 2 SE").format(r["limit"])
        met = "met" if r["met"] == "True" else "**missed**"
        lines.append(f"| {r['target']} | {FORM_NAMES.get(r['form'], r['form'])} | {r['metric']} | {r['config']} | "
                     f"{r['against']} | {measure} | {limit} | {met} |")  # fmt: skip
    first = rows[0]
    return "\n".join(lines) + f"\n\nCommand: `{first['command']}`\n"
