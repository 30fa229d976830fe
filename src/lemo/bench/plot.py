"""Figures from end-to-end benchmark CSVs, so every plotted number traces back to a committed measurement.

    lemo bench plot benchmarks/results/e2e_llama3_8b.csv benchmarks/results/e2e_llama3_8b_shared.csv \\
        --out-dir benchmarks/results --prefix e2e_llama3_8b
    python benchmarks/e2e/plot.py ...   (the same, from a source checkout)

Two kinds of CSV, told apart by their header (both may be given in one call):
    step CSV (written by `lemo bench`, one row per config and T)
        -> PREFIX_memory.png     peak allocated memory against T
        -> PREFIX_step_time.png  median step time against T
    longest-T CSV (one row per config: the longest T that trains under a memory cap)
        -> PREFIX_longest_T.png  horizontal bars, one per config

Rows are grouped by (shape, GPU): results of different models or GPUs never share axes. When more than one
group remains after --shape/--configs filtering, each group gets its own files, named
PREFIX_<shape>_<gpu>_memory.png and so on.

A config measured at several keep ratios (lemo-shared at 0.4 and 0.6) is one line per keep ratio. When the same
measurement appears more than once (same config, keep ratio and T; for longest-T CSVs same config and cap),
the LAST row wins, reading the files in the order given and each file top to bottom: a later run supersedes an
earlier one, so list older CSVs first. Titles name the commits of the rows actually drawn.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

# Re-exported: callers and tests reach the row and drawing helpers through this module, as through plot.py.
from lemo.bench.axes import (  # noqa: F401
    GC_STYLE,
    OOM_BAND,
    _colours,
    _draw_series,
    _gc_title,
    _legend,
    _new_figure,
    _x_axis,
    by_series,
    coinciding,
)
from lemo.bench.rows import (  # noqa: F401
    GC_CONFIGS,
    GC_SUFFIXES,
    LONGEST_COLUMNS,
    STEP_COLUMNS,
    Row,
    by_group,
    checkpointing,
    csv_kind,
    family,
    keep_label,
    latest,
    longest_key,
    provenance,
    read_csv,
    safe,
    select,
    series_name,
    step_key,
    tokens,
    uses_gc,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_vs_T(rows: list[Row], metric: str, what: str, ylabel: str, log_y: bool, link_oom: bool) -> Figure:
    """`metric` against T for one (shape, GPU) group: a panel without and one with gradient checkpointing.

    Configs without and with checkpointing differ by several times in memory; side by side they each keep a
    readable scale while sharing the y axis, so the two panels still compare directly.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator

    panels = [
        (title, part)
        for title, part in (
            ("without gradient checkpointing", [r for r in rows if not uses_gc(r["config"])]),
            (_gc_title(rows), [r for r in rows if uses_gc(r["config"])]),
        )
        if part
    ]
    fig, axes = _new_figure(6.0 * len(panels) + 2.6, 5.2, columns=len(panels))
    colours = _colours(rows)
    lengths = sorted({int(r["seq_len"]) for r in rows})
    values = [float(r[metric]) for r in rows if r["status"] == "ok" and r[metric]]
    for ax, (title, part) in zip(axes, panels):
        _draw_series(ax, part, metric, colours, link_oom)
        _x_axis(ax, lengths)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    if values:
        lo, hi = min(values), max(values)
        if log_y:
            axes[0].set_yscale("log")
            # Headroom above the data for the OOM band (a quarter of the plotted decades).
            # The data's decades fill the axes up to just below the OOM band.
            span = math.log(hi * 1.3 / (lo / 1.5))
            axes[0].set_ylim(lo / 1.5, lo / 1.5 * math.exp(span / (OOM_BAND - 0.02)))
            # Labels at 1-2-5 steps: plain decades leave most of a short range unlabelled.
            axes[0].yaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
            axes[0].yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:g}"))
        else:
            axes[0].set_ylim(0, hi * 1.05 / (OOM_BAND - 0.02))
    shape, gpu = rows[0]["shape"], rows[0]["gpu"]
    fig.suptitle(f"{shape} on {gpu}: {what}\n{provenance(rows)}", fontsize=10.5)
    _legend(fig, axes, any(r["status"] != "ok" for r in rows), link_oom)
    return fig


def plot_longest(rows: list[Row]) -> Figure:
    """Horizontal bars: the longest T that trained under the memory cap, one bar per config."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    caps = list(dict.fromkeys(r["cap_gib"] for r in rows))
    fig, (ax,) = _new_figure(10.0, 1.2 + 0.55 * len(rows))
    colours = _colours(rows)
    labels = [series_name(r) + (f" @ {r['cap_gib']} GiB" if len(caps) > 1 else "") for r in rows]
    longest = [int(float(r["longest_ok_T"])) if r["longest_ok_T"] else 0 for r in rows]
    bars = ax.barh(labels, longest, color=[colours[family(r)] for r in rows], height=0.6)
    ax.invert_yaxis()  # first config on top, as in the CSV
    for bar, row, T in zip(bars, rows, longest):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            "  " + _bar_note(row, T),
            va="center",
            fontsize=9,
        )
    right = max([*longest, 1]) * 1.8  # room for the note right of the longest bar
    ax.set_xlim(0, right)
    ax.xaxis.set_major_locator(MultipleLocator(_round_step(right)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: tokens(x) if x else "0"))
    ax.set_xlabel("longest trainable sequence length T (tokens)")
    ax.grid(alpha=0.3, axis="x")
    cap = (
        f"under a {float(caps[0]):.1f} GiB ({float(caps[0]) * 2**30 / 1e9:.0f} GB) memory cap"
        if len(caps) == 1
        else "under a memory cap"
    )
    shape, gpu = rows[0]["shape"], rows[0]["gpu"]
    fig.suptitle(f"{shape} on {gpu}: longest trainable T {cap}\n{provenance(rows)}", fontsize=10.5)
    return fig


def _round_step(span: float, most: int = 8) -> int:
    """A tick step that is a power of two (16K, 32K, ...), so tick labels are round token counts."""
    step = 1
    while span / step > most:
        step *= 2
    return step


def _bar_note(row: Row, T: int) -> str:
    """'96K · 71.2 GiB · 12.3 s/step · first OOM at 128K': the value first, then what it cost and where the
    search hit the cap (or, with no OOM, how far it searched)."""
    parts = [tokens(T) if T else "nothing fits"]
    if T and row.get("peak_alloc_gib"):
        parts.append(f"{float(row['peak_alloc_gib']):.1f} GiB")
    if T and row.get("median_step_s"):
        parts.append(f"{float(row['median_step_s']):.1f} s/step")
    first_oom = float(row["first_oom_T"] or 0)
    if first_oom:
        parts.append(f"first OOM at {tokens(first_oom)}")
    elif row.get("probes"):  # bench.py's search log, "8192:ok 16384:ok ...": it stopped at its maximum
        probed = [int(p.split(":")[0]) for p in row["probes"].split() if p.split(":")[0].isdigit()]
        if probed:
            parts.append(f"no OOM up to {tokens(max(probed))}")
    return " · ".join(parts)


# ------------------------------------------------------------------------------------------------ main


# Figures of a step CSV: file suffix, column, title, y label, log y, OOM markers joined to the curve.
STEP_FIGURES = (
    ("memory", "peak_alloc_gib", "peak allocated memory per training step", "GiB", False, True),
    ("step_time", "median_step_s", "median training-step time", "seconds", True, False),
)


def figures(kind: str, rows: list[Row], prefix: str, out_dir: Path) -> list[tuple[Path, Figure]]:
    """Every figure of one CSV kind, with the path it is written to."""
    groups = by_group(rows)
    out = []
    for (shape, gpu), group in groups.items():
        stem = prefix if len(groups) == 1 else f"{prefix}_{safe(shape)}_{safe(gpu)}"
        if kind == "longest":
            out.append((out_dir / f"{stem}_longest_T.png", plot_longest(group)))
            continue
        for suffix, metric, what, ylabel, log_y, link_oom in STEP_FIGURES:
            fig = plot_vs_T(group, metric, what, ylabel, log_y=log_y, link_oom=link_oom)
            out.append((out_dir / f"{stem}_{suffix}.png", fig))
    return out


def parse_args(argv: list[str] | None, prog: str | None = None) -> argparse.Namespace:
    """The command line (see the module docstring); `prog` names the command in usage lines (None: the script)."""
    ap = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("csvs", nargs="+", type=Path, metavar="CSV", help="step and/or longest-T CSVs")
    ap.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--prefix", default="e2e", help="file-name prefix of the PNGs (default: e2e)")
    ap.add_argument("--shape", default=None, help="only rows of this model shape (e.g. llama3-8b)")
    ap.add_argument("--configs", nargs="+", default=None, help="only these configs")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Draw and write every figure the CSVs support; 2 with a message when the input is unusable.

    `prog` is the command as the user typed it ("lemo bench plot"); None keeps the script's name, plot.py.
    """
    args = parse_args(argv, prog)
    name = prog or "plot.py"
    try:
        import matplotlib  # noqa: F401  (the `plot` extra)
    except ImportError:
        print(f"{name}: error: needs matplotlib: pip install 'lemo[plot]'", file=sys.stderr)
        return 2
    try:
        written = draw(args)
    except (ValueError, OSError) as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    return 0


def draw(args: argparse.Namespace) -> list[Path]:
    """Read, filter, deduplicate and plot; the paths written."""
    rows: dict[str, list[Row]] = {"step": [], "longest": []}
    for index, path in enumerate(args.csvs):
        kind, found = read_csv(path, index)
        rows[kind] += found
    args.out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, key in (("step", step_key), ("longest", longest_key)):
        if not rows[kind]:
            continue
        kept = latest(select(rows[kind], args.shape, args.configs), key)
        if not kept:
            raise ValueError(f"no {kind} rows left after --shape {args.shape} --configs {args.configs}")
        for path, fig in figures(kind, kept, args.prefix, args.out_dir):
            fig.savefig(path, dpi=130)
            written.append(path)
    return written


if __name__ == "__main__":
    sys.exit(main())
