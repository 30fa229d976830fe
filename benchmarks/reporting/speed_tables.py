"""Tables of the speed and memory CSVs: step time and memory per (T, config), longest T, offload and tiling."""

from __future__ import annotations

from reporting.common import _fmt


def _commands(rows: list[dict]) -> str:
    """The table's commands, each once: a CSV merged from several runs names every run's."""
    commands = list(dict.fromkeys(r.get("command", "?") for r in rows))
    if len(commands) == 1:
        return f"Command: `{commands[0]}`"
    return "Commands: " + "; ".join(f"`{c}`" for c in commands)


def _add_columns(lines: list[str], rows: list[dict[str, str]], header: str, cells) -> None:
    """Append columns to a markdown table (`lines`: header, rule, one line per row of `rows`): `cells(row)` gives
    the row's cells, or a falsy value for a dash in each."""
    n = header.count("|")
    lines[0] += header
    lines[1] += "---|" * n
    for i, r in enumerate(rows, start=2):
        lines[i] += cells(r) or " – |" * n


def e2e_table(rows: list[dict[str, str]]) -> str:
    """Memory and step time per (T, config), with the ratio to `lora` at the same T (rows ordered by T)."""
    rows = sorted(rows, key=lambda r: int(r["seq_len"]))  # stable: runs keep their order within one T
    # Ratios only within one run (commit): a CSV may hold runs on other cards.
    base = {
        (r["seq_len"], r.get("commit")): r for r in rows if r["config"] == "lora" and r.get("status") == "ok"
    }
    # Ratios against `exact` with the same labels (a run may supervise only a completion: `--completion`).
    exact = {
        (r["seq_len"], r.get("completion") or "0.0", r.get("commit")): r
        for r in rows
        if r["config"] == "exact" and r.get("status") == "ok"
    }
    lines = [
        "| T | config | keep ratio | MLP | peak alloc GiB | vs lora | peak reserved GiB | median step s | vs lora | vs exact | tokens/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = base.get((r["seq_len"], r.get("commit")))
        ok = r.get("status") == "ok"
        mem_ratio = f"{float(r['peak_alloc_gib']) / float(ref['peak_alloc_gib']):.2f}x" if ok and ref else "–"
        time_ratio = f"{float(r['median_step_s']) / float(ref['median_step_s']):.2f}x" if ok and ref else "–"
        ex = exact.get((r["seq_len"], r.get("completion") or "0.0", r.get("commit")))
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
        _add_columns(
            lines,
            rows,
            " predictor ms / step | predictor share of step | predictor MiB |",
            lambda r: (
                r.get("predictor_ms_per_step")
                and (
                    f" {float(r['predictor_ms_per_step']):.1f} | {float(r['predictor_share']) * 100:.2f}% "
                    f"| {float(r['predictor_param_mib']):.0f} |"
                )
            ),
        )
    if any(float(r.get("completion") or 0) for r in rows):
        lines[0] += " positions with a label |"
        lines[1] += "---|"
        for i, r in enumerate(rows, start=2):
            c = float(r.get("completion") or 0)
            lines[i] += f" last {c:.0%} |" if c else " all |"
    liger = {
        (r["seq_len"], r.get("completion") or "0.0", r.get("commit"), r["config"]): r
        for r in rows
        if r["config"].startswith("liger-exact") and r.get("status") == "ok"
    }
    if (
        liger
    ):  # the strongest exact stack: every row's step time against it in the same run, same T and labels
        lines[0] += " vs liger-exact |"
        lines[1] += "---|"
        for i, r in enumerate(rows, start=2):
            key = (r["seq_len"], r.get("completion") or "0.0", r.get("commit"), _liger_twin(r["config"]))
            ref = liger.get(key)
            ok = r.get("status") == "ok" and ref
            lines[i] += f" {float(r['median_step_s']) / float(ref['median_step_s']):.2f}x |" if ok else " – |"
    if any(r.get("host_pool_gib") for r in rows):
        _add_columns(
            lines,
            rows,
            " pinned host GiB |",
            lambda r: f" {_fmt('host_pool_gib', r.get('host_pool_gib') or '')} |",
        )
    if any(r.get("fraction_of_matmul") for r in rows):
        _add_columns(
            lines,
            rows,
            " model TFLOP/s | of matmul peak |",
            lambda r: (
                r.get("fraction_of_matmul")
                and f" {float(r['achieved_tflop_per_s']):.0f} | {float(r['fraction_of_matmul']) * 100:.0f}% |"
            ),
        )
    first = rows[0]
    commits = ", ".join(dict.fromkeys(r.get("commit", "?") for r in rows))
    gpus = ", ".join(dict.fromkeys(r.get("gpu") or "?" for r in rows))
    weights = "real weights" if first.get("shape") == "smollm2" else "random init"
    prov = (
        f"\n{gpus}, torch {first.get('torch', '?')}, transformers {first.get('transformers', '?')}, "
        f"peft {first.get('peft', '?')}, commit {commits}, shape {first.get('shape', '?')} "
        f"({weights}), backend {first.get('backend', '?')}. {_commands(rows)}\n"
    )
    if first.get("matmul_tflop_per_s"):
        prov += (
            f"\nModel TFLOP/s = (6·N·T + 6·L·d·T²) / step time, dense-equivalent (work skipped by lemo and weight "
            f"gradients not computed by LoRA still count); matmul peak = measured bf16 8192³ matmul, "
            f"{float(first['matmul_tflop_per_s']):.0f} TFLOP/s.\n"
        )
    return "\n".join(lines) + "\n" + prov


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


def _liger_twin(config: str) -> str:
    """Liger's exact config with the same memory stack: liger-default+offload+tiled-attn ->
    liger-exact+offload+tiled-attn; a config without offload or tiling -> liger-exact."""
    stack = config.partition("+offload")[2]
    return "liger-exact" + ("+offload" + stack if "+offload" in config else "")


def _exact_twin(config: str) -> str:
    """The exact config with the same memory stack: lemo+offload+tiled -> exact+offload+tiled."""
    return "exact" if config == "lemo-random+gc" else config.replace("lemo", "exact", 1)


def timed(r: dict[str, str]) -> str:
    """How a bench row was timed, read from its command. A single step without warm-up also pays for pinning the
    host pool and the first kernel compiles and autotuning; after a warm-up through a few layers
    (--warmup-layers few), rows before 87a20f9 paid for pinning most of the pool (and, under lemo, tuning the
    trimmed last layer's kernels), later ones for neither (`lemo.bench.step.reserve_host_pool`)."""
    words = r.get("command", "").split()

    def get(flag: str, default: str) -> str:
        return words[words.index(flag) + 1] if flag in words else default

    warm, steps = get("--warmup", "1"), get("--steps", "3")
    if warm == "0":
        return "1, no warm-up"
    return f"{steps} after {warm} warm-up" + (
        " (few layers)" if get("--warmup-layers", "all") == "few" else ""
    )


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


def profile_table(rows: list[dict[str, str]]) -> str:
    """One profiled step per (config, T) (benchmarks/e2e/profile_step.py): the step, its idle time, launches and
    host syncs, then the device time of each op family, largest first, as a share of the busy time."""
    steps = [r for r in rows if r["family"] == "step"]
    parts = {(r["config"], r["seq_len"], r["commit"], r["family"]): r for r in rows if r["family"] != "step"}
    totals: dict[str, float] = {}
    for (_, _, _, family), r in parts.items():
        totals[family] = totals.get(family, 0.0) + float(r["ms"])
    families = sorted(totals, key=lambda f: -totals[f])
    lines = [
        "| T | config | step ms | idle | gaps | launches | host syncs | "
        + " | ".join(families)
        + " | commit |",
        "|---|---|---|---|---|---|---|" + "---|" * len(families) + "---|",
    ]
    for s in steps:

        def cell(family: str, s=s) -> str:
            r = parts.get((s["config"], s["seq_len"], s["commit"], family))
            return f"{float(r['ms']):.0f} ({float(r['share']):.1%})" if r else "–"

        lines.append(
            f"| {int(s['seq_len']) // 1024}K | {s['config']} | {float(s['step_ms']):.0f} "
            f"| {float(s['idle_share']):.1%} ({float(s['idle_ms']):.0f} ms) | {s['gaps']} | {s['launches']} "
            f"| {s['host_syncs']} | " + " | ".join(cell(f) for f in families) + f" | {s['commit']} |"
        )
    gpus = ", ".join(dict.fromkeys(r.get("gpu") or "?" for r in steps))
    return "\n".join(lines) + (
        f"\n\n{gpus}, torch {steps[0].get('torch', '?')}, liger-kernel {steps[0].get('liger_kernel') or '–'}. "
        f"Command of the first row: `{steps[0].get('command', '?')}`\n"
    )


def peak_owners_table(rows: list[dict[str, str]], top: int = 5) -> str:
    """What held the memory at each profiled step's peak, by the code that allocated it (lemo.bench.peak_owners):
    the `top` largest owners per (config, T)."""
    lines = [
        "| T | config | rank | allocated by | GiB | share of the peak | blocks |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if int(r["rank"]) <= top:
            lines.append(
                f"| {int(r['seq_len']) // 1024}K | {r['config']} | {r['rank']} | `{r['owner']}` | {float(r['gib']):.2f} "
                f"| {float(r['share']):.0%} | {r['count']} |"
            )
    first = rows[0]
    return "\n".join(lines) + f"\n\n{first.get('gpu', '?')}, commit {first.get('commit', '?')}.\n"
