"""What every part of the report shares: the repository root, the results folder, reading a CSV, a cell's format."""

from __future__ import annotations

import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = "benchmarks/results"


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


def read(csv_name: str) -> list[dict[str, str]]:
    with (ROOT / RESULTS / csv_name).open(newline="") as fh:
        return list(csv.DictReader(fh))
