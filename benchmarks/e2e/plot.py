"""Figures from end-to-end benchmark CSVs, so every plotted number traces back to a committed measurement.

    python benchmarks/e2e/plot.py benchmarks/results/e2e_llama3_8b.csv benchmarks/results/e2e_llama3_8b_shared.csv \
        --out-dir benchmarks/results --prefix e2e_llama3_8b
    lemo bench plot ...   (the same, through the CLI)

Two kinds of CSV, told apart by their header (both may be given in one call):
    step CSV (written by bench.py, one row per config and T)
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
import csv
import math
import re
import sys
import textwrap
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

STEP_COLUMNS = ("config", "shape", "seq_len", "status", "peak_alloc_gib", "median_step_s", "gpu", "commit")
LONGEST_COLUMNS = ("config", "shape", "cap_gib", "longest_ok_T", "first_oom_T", "gpu", "commit")
# Gradient checkpointing of bench.py's configs, from their names (its CONFIGS table is not imported: that needs
# torch): "+gc" all layers, "+sgc" the sparse layers only, and `exact` is lora+gc with the segmented loss.
GC_SUFFIXES = {"+gc": "all", "+sgc": "sparse"}
GC_CONFIGS = ("exact",)
# Line style and marker per checkpointing mode: colour is the method, the dash tells how it was checkpointed.
GC_STYLE = {"none": ("-", "o"), "all": ("--", "s"), "sparse": ("-.", "D")}
Row = dict[str, str]


# ---------------------------------------------------------------------------------------------- reading


def csv_kind(header: Sequence[str]) -> str:
    """'longest' or 'step' from a CSV header; ValueError when it is neither or lacks a required column."""
    kind = "longest" if "longest_ok_T" in header else "step"
    required = LONGEST_COLUMNS if kind == "longest" else STEP_COLUMNS
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(
            f"missing column(s) {', '.join(missing)}: not a {kind} CSV of benchmarks/e2e "
            f"(a step CSV needs {', '.join(STEP_COLUMNS)}; "
            f"a longest-T CSV needs {', '.join(LONGEST_COLUMNS)})"
        )
    return kind


def read_csv(path: Path, index: int = 0) -> tuple[str, list[Row]]:
    """The kind of a result CSV and its rows, each tagged with the file it came from (and its place in the
    argument list, so titles list commits and files in the order given)."""
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        try:
            kind = csv_kind(reader.fieldnames or [])
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        rows = [{**row, "_source": path.name, "_file": str(index)} for row in reader]
    return kind, rows


def step_key(row: Row) -> tuple[str, str, str, str, int]:
    """What makes a step-CSV row one measurement: a row with the same key is a rerun."""
    return row["shape"], row["gpu"], row["config"], keep_label(row), int(row["seq_len"])


def longest_key(row: Row) -> tuple[str, str, str, str, str]:
    """What makes a longest-T row one measurement: a row with the same key is a rerun."""
    return row["shape"], row["gpu"], row["config"], keep_label(row), row["cap_gib"]


def latest(rows: Iterable[Row], key: Callable[[Row], Hashable]) -> list[Row]:
    """One row per key, the last one seen (a rerun supersedes), in order of each key's first appearance."""
    by_key: dict = {}
    for row in rows:
        by_key[key(row)] = row  # a dict keeps the first insertion's position and takes the new value
    return list(by_key.values())


def select(rows: list[Row], shape: str | None, configs: Sequence[str] | None) -> list[Row]:
    """Rows of `shape` and `configs` (None or empty: all)."""
    return [
        r for r in rows if (shape is None or r["shape"] == shape) and (not configs or r["config"] in configs)
    ]


def by_group(rows: list[Row]) -> dict[tuple[str, str], list[Row]]:
    """Rows split by (shape, GPU), in order of first appearance."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row["shape"], row["gpu"]), []).append(row)
    return groups


# ------------------------------------------------------------------------------------------- labelling


def tokens(T: float) -> str:
    """Sequence length as people say it: 8192 -> 8K, 98304 -> 96K, 1048576 -> 1M, 512 -> 512."""
    T = int(T)
    if T >= 2**20 and T % 2**20 == 0:
        return f"{T // 2**20}M"
    if T >= 1024:
        return f"{T // 1024}K" if T % 1024 == 0 else f"{T / 1024:.1f}K"
    return str(T)


def keep_label(row: Row) -> str:
    """'0.4' for a sparse run, '' for a dense one (keep ratio 1 or not recorded)."""
    text = row.get("keep_ratio", "") or ""
    try:
        return "" if float(text) >= 1 else f"{float(text):g}"
    except ValueError:
        return ""


def series_name(row: Row) -> str:
    """Legend name of a row's series: the config, with its keep ratio when sparse."""
    keep = keep_label(row)
    return f"{row['config']} (keep {keep})" if keep else row["config"]


def checkpointing(config: str) -> str:
    """'none', 'all' or 'sparse' (layers under gradient checkpointing), read from the config name."""
    for suffix, mode in GC_SUFFIXES.items():
        if config.endswith(suffix):
            return mode
    # "+offload" checkpoints every layer (the stored inputs are what goes to the host)
    return "all" if config in GC_CONFIGS or "+offload" in config else "none"


def uses_gc(config: str) -> bool:
    """Whether any layer of `config` runs under gradient checkpointing."""
    return checkpointing(config) != "none"


def family(row: Row) -> str:
    """Configs that differ only by gradient checkpointing share a colour (lora / lora+gc, lemo / lemo+gc)."""
    base = row["config"]
    for suffix in GC_SUFFIXES:
        base = base.removesuffix(suffix)
    return f"{base}|{keep_label(row)}"


def safe(text: str) -> str:
    """A file-name-safe slug: 'NVIDIA H200' -> 'nvidia_h200'."""
    return re.sub(r"[^a-z0-9.+-]+", "_", text.lower()).strip("_")


def provenance(rows: list[Row]) -> str:
    """The line under a title that makes a figure traceable: commits, versions, backend and source files."""

    in_file_order = sorted(rows, key=lambda r: int(r.get("_file", 0)))

    def distinct(column: str) -> list[str]:
        return list(dict.fromkeys(r[column] for r in in_file_order if r.get(column)))

    commits = distinct("commit")
    parts = [f"commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}"]
    parts += [f"torch {v}" for v in distinct("torch")]
    parts += [f"backend {v}" for v in distinct("backend")]
    parts.append("from " + ", ".join(distinct("_source")))
    return " · ".join(parts)


# ---------------------------------------------------------------------------------------------- drawing


def _new_figure(width: float, height: float, columns: int = 1) -> tuple[Figure, list[Axes]]:
    # A bare Figure renders PNGs with the Agg canvas and never touches pyplot's global state or backend.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, columns, sharey=True, squeeze=False)[0]
    return fig, list(axes)


def _colours(rows: list[Row]) -> dict[str, tuple]:
    import matplotlib

    palette = matplotlib.colormaps["tab10"].colors
    families = list(dict.fromkeys(family(r) for r in rows))
    return {f: palette[i % len(palette)] for i, f in enumerate(families)}


def _x_axis(ax: Axes, lengths: Sequence[int]) -> None:
    """log2 axis with a tick at every measured T, labelled 8K, 16K, ..."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(sorted(lengths)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: tokens(x)))
    lo, hi = min(lengths), max(lengths)
    # Half an octave of margin: room for the OOM markers, which are spread sideways around their T.
    ax.set_xlim(lo / 2**0.5, hi * 2**0.5)
    ax.set_xlabel("sequence length T (tokens)")


OOM_Y = 0.93  # height of the OOM markers, as a fraction of the axes height
OOM_BAND = 0.88  # the top band from here up holds OOM markers only, never data


def _oom_band(ax: Axes) -> None:
    """Shade the top band, so its markers do not read as values on the y axis."""
    from matplotlib.patches import Rectangle

    ax.add_patch(
        Rectangle((0, OOM_BAND), 1, 1 - OOM_BAND, transform=ax.transAxes, color="0.94", zorder=0, lw=0)
    )


def _oom_markers(ax: Axes, ooms: dict[int, list[tuple]], last_ok: dict[int, list] | None) -> None:
    """An 'x' per configuration that ran out of memory, in the band at the top edge, labelled OOM.

    Several configurations failing at one T sit side by side (small offsets in log2 space) in their own
    colours, so each stays visible. With `last_ok`, a dotted line joins a series' last successful point to
    its first OOM: the memory curve leaves the plot there.
    """
    from matplotlib.patches import ConnectionPatch

    band = ax.get_xaxis_transform()  # x in data units, y as a fraction of the axes height
    for T, colours in ooms.items():
        n = len(colours)
        for i, colour in enumerate(colours):
            x = T * 2 ** (0.09 * (i - (n - 1) / 2))
            ax.plot([x], [OOM_Y], marker="x", ms=9, mew=2.2, color=colour, transform=band, zorder=3)
            if last_ok and last_ok[T][i] is not None:
                link = ConnectionPatch(
                    last_ok[T][i],
                    (x, OOM_Y),
                    coordsA=ax.transData,
                    coordsB=band,
                    ls=":",
                    lw=1.3,
                    color=colour,
                    alpha=0.8,
                )
                ax.add_artist(link)
        ax.text(T, 0.995, "OOM", transform=band, ha="center", va="top", fontsize=8, color="0.25")


def _ok_points(points: list[Row], metric: str) -> list[tuple[int, float]]:
    return [(int(r["seq_len"]), float(r[metric])) for r in points if r["status"] == "ok" and r[metric]]


def _draw_series(ax: Axes, rows: list[Row], metric: str, colours: dict[str, tuple], link_oom: bool) -> None:
    """One line per series of `rows` (already one row per T); OOM rows become top-edge markers, joined to
    the curve when `link_oom` (memory: running out is where the curve goes; time: it is not)."""
    ooms: dict[int, list[tuple]] = {}
    last_ok: dict[int, list] = {}
    for name, points in by_series(rows).items():
        first = points[0]
        colour = colours[family(first)]
        ls, marker = GC_STYLE[checkpointing(first["config"])]
        style = {"ls": ls, "marker": marker, "color": colour}
        ok = _ok_points(points, metric)
        xs, ys = zip(*ok) if ok else ((), ())  # a series with no successful run still gets its legend entry
        ax.plot(xs, ys, ms=5, lw=1.8, label=name, **style)
        failed = [int(r["seq_len"]) for r in points if r["status"] != "ok"]
        for T in failed:
            ooms.setdefault(T, []).append(colour)
            # Only the first OOM of a series is joined to its curve: later ones follow from it.
            below = [p for p in ok if p[0] < T]
            joined = below[-1] if below and min(failed) == T else None
            last_ok.setdefault(T, []).append(joined)
    if ooms:
        _oom_band(ax)
        _oom_markers(ax, ooms, last_ok if link_oom else None)
    _overlap_note(ax, rows, metric)


def coinciding(rows: list[Row], metric: str, tolerance: float = 0.02) -> list[list[str]]:
    """Groups of series whose curves lie on top of each other: equal within `tolerance` (relative) at every
    T both measured. A later line hides such series completely, so the figure names them in a note."""
    curves = {name: dict(_ok_points(points, metric)) for name, points in by_series(rows).items()}
    groups: list[list[str]] = []
    for name, curve in curves.items():
        for group in groups:
            ref = curves[group[0]]
            shared = curve.keys() & ref.keys()
            if shared and all(abs(curve[T] - ref[T]) <= tolerance * ref[T] for T in shared):
                group.append(name)
                break
        else:
            groups.append([name])
    return [g for g in groups if len(g) > 1]


def _overlap_note(ax: Axes, rows: list[Row], metric: str) -> None:
    groups = coinciding(rows, metric)
    if not groups:
        return
    lines = ["lines on top of each other (within 2%):"]
    lines += [
        textwrap.fill(", ".join(g), 48, initial_indent="• ", subsequent_indent="   ", break_on_hyphens=False)
        for g in groups
    ]
    ax.text(
        0.98,
        0.03,
        "\n".join(lines),
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        multialignment="left",
        fontsize=7.5,
        color="0.2",
        bbox={"boxstyle": "round,pad=0.4", "fc": "white", "ec": "0.8", "alpha": 0.9},
    )


def by_series(rows: list[Row]) -> dict[str, list[Row]]:
    """Rows per series name, each sorted by T."""
    out: dict[str, list[Row]] = {}
    for row in rows:
        out.setdefault(series_name(row), []).append(row)
    return {k: sorted(v, key=lambda r: int(r["seq_len"])) for k, v in out.items()}


def _legend(fig: Figure, axes: list[Axes], any_oom: bool, linked: bool) -> None:
    from matplotlib.lines import Line2D

    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    if any_oom:
        handles.append(Line2D([], [], ls="", marker="x", ms=8, mew=2, color="0.3"))
        labels.append("out of memory (OOM)" + ("\ndotted: from the last T that fit" if linked else ""))
    fig.legend(handles, labels, loc="outside right upper", fontsize=8.5, frameon=False)


def _gc_title(rows: list[Row]) -> str:
    sparse = any(checkpointing(r["config"]) == "sparse" for r in rows)
    return "with gradient checkpointing" + (" (+sgc, dash-dot: sparse layers only)" if sparse else "")


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csvs", nargs="+", type=Path, metavar="CSV", help="step and/or longest-T CSVs")
    ap.add_argument("--out-dir", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--prefix", default="e2e", help="file-name prefix of the PNGs (default: e2e)")
    ap.add_argument("--shape", default=None, help="only rows of this model shape (e.g. llama3-8b)")
    ap.add_argument("--configs", nargs="+", default=None, help="only these configs")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Draw and write every figure the CSVs support; 2 with a message when the input is unusable."""
    args = parse_args(argv)
    try:
        import matplotlib  # noqa: F401  (the `plot` extra)
    except ImportError:
        print("plot.py: error: needs matplotlib: pip install -e '.[plot]'", file=sys.stderr)
        return 2
    try:
        written = draw(args)
    except (ValueError, OSError) as err:
        print(f"plot.py: error: {err}", file=sys.stderr)
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
