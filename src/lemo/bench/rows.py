"""Result CSVs of the benchmark as the figures see them: reading, deduplicating, grouping and labelling rows.

Pure Python (csv and re only): no torch, no matplotlib, so it is cheap to import and to test.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path

STEP_COLUMNS = ("config", "shape", "seq_len", "status", "peak_alloc_gib", "median_step_s", "gpu", "commit")
LONGEST_COLUMNS = ("config", "shape", "cap_gib", "longest_ok_T", "first_oom_T", "gpu", "commit")
# Gradient checkpointing of the benchmark's configs, from their names (its CONFIGS table is not consulted: a CSV
# may name configs of another version): "+gc" all layers, "+sgc" the sparse layers only, and `exact` is lora+gc
# with the segmented loss.
GC_SUFFIXES = {"+gc": "all", "+sgc": "sparse"}
GC_CONFIGS = ("exact", "liger-exact")  # gradient checkpointing without a "+gc" in the name
Row = dict[str, str]


# ---------------------------------------------------------------------------------------------- reading


def csv_kind(header: Sequence[str]) -> str:
    """'longest' or 'step' from a CSV header; ValueError when it is neither or lacks a required column."""
    kind = "longest" if "longest_ok_T" in header else "step"
    required = LONGEST_COLUMNS if kind == "longest" else STEP_COLUMNS
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(
            f"missing column(s) {', '.join(missing)}: not a {kind} CSV of lemo bench "
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


def combine_longest(rows: Iterable[Row]) -> list[Row]:
    """One longest-T row per `longest_key` from the probes of all its rows: a search split over several
    device calls (each at most 10 minutes) is one search. The first failure is the shortest T that did not fit
    (a later probe of the same T overrides an earlier one); the longest T is the longest that fit below it. The
    measured columns come from the row that ran that T; commits and timestamps list every row's."""
    groups: dict[Hashable, list[Row]] = {}
    for row in rows:
        groups.setdefault(longest_key(row), []).append(row)
    combined = []
    for group in groups.values():
        status: dict[int, tuple[str, Row]] = {}
        for row in group:
            for probe in (row.get("probes") or "").split():
                T, _, result = probe.partition(":")
                status[int(T)] = (result, row)
        failed = [T for T, (result, _) in status.items() if result != "ok"]
        first_fail = min(failed, default=0)
        fitted = [
            T for T, (result, _) in status.items() if result == "ok" and (not first_fail or first_fail > T)
        ]
        best = max(fitted, default=0)
        source = status[best][1] if best else group[-1]
        merged = dict(source)
        if str(source.get("longest_ok_T")) != str(best):  # its measured columns are of another T
            merged.update(
                {k: "" for k in ("peak_alloc_gib", "peak_reserved_gib", "median_step_s", "host_peak_gib")}
            )
        merged.update(
            longest_ok_T=str(best),
            first_oom_T=str(first_fail or ""),
            probes=" ".join(f"{T}:{status[T][0]}" for T in sorted(status)),
            commit=" ".join(dict.fromkeys(r.get("commit", "") for r in group)),
            timestamp=" ".join(dict.fromkeys(r.get("timestamp", "") for r in group)),
        )
        combined.append(merged)
    return combined


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
    line = " · ".join(parts)
    # Two lines when long: a title line wider than the figure is cut at both edges.
    return line if len(line) <= 100 else " · ".join(parts[:-1]) + "\n" + parts[-1]
