"""Drawing primitives of the benchmark figures: axes, series lines, OOM markers, overlap notes and legend.

matplotlib is imported inside the functions, so importing this module needs only the standard library.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lemo.bench.rows import Row, checkpointing, family, series_name, tokens

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# Line style and marker per checkpointing mode: colour is the method, the dash tells how it was checkpointed.
GC_STYLE = {"none": ("-", "o"), "all": ("--", "s"), "sparse": ("-.", "D")}


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
    # Centred, not upper: the figure-wide title also sits at the top, and an upper legend would run into it.
    fig.legend(handles, labels, loc="outside right center", fontsize=8.5, frameon=False)


def _gc_title(rows: list[Row]) -> str:
    sparse = any(checkpointing(r["config"]) == "sparse" for r in rows)
    return "with gradient checkpointing" + (" (+sgc, dash-dot: sparse layers only)" if sparse else "")
