"""benchmarks/quality/plot_suite_distance.py: pools the near and far rows of one config over seeds (hits over
questions), draws one panel per run, and refuses a run spec or a CSV without such rows."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.eval.conftest import load_script, write_rows

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "quality" / "plot_suite_distance.py"
FIELDS = ["config", "form", "seed", "metric", "family", "eval_len", "value", "n"]


@pytest.fixture(scope="module")
def plot():
    yield from load_script(SCRIPT)


def _raw(path: Path) -> Path:
    rows = [
        ("dense:A_v8", "sup", 0, "exact_match_near", "kv", 16384, 0.5, 4),
        ("dense:A_v8", "sup", 1, "exact_match_near", "kv", 16384, 0.25, 4),
        ("dense:A_v8", "sup", 0, "exact_match_far", "kv", 16384, 0.0, 2),
        ("dense:A_v8", "sup", 0, "exact_match", "kv", 16384, 0.4, 6),  # not a distance row
        ("dense:A_v8", "text", 0, "exact_match_near", "kv", 16384, 1.0, 6),  # the other form
        ("dense:B_half", "sup", 0, "exact_match_near", "kv", 16384, 1.0, 6),  # another config
    ]
    return write_rows(path, FIELDS, rows)


def test_seeds_pool_into_hits_over_questions(plot, tmp_path):
    got = plot.pooled(_raw(tmp_path / "s.csv"), "dense:A_v8", "sup", 16384)
    assert got == {("exact_match_near", "kv"): (0.375, 8), ("exact_match_far", "kv"): (0.0, 2)}


def test_draws_a_panel_per_run(plot, tmp_path):
    raw = _raw(tmp_path / "s.csv")
    out = tmp_path / "d.png"
    assert plot.main([f"A={raw}:dense:A_v8", f"B={raw}:dense:B_half", "--out", str(out)]) == 0
    assert out.stat().st_size > 0


def test_a_bad_spec_or_a_csv_without_distance_rows_is_refused(plot, tmp_path):
    raw = _raw(tmp_path / "s.csv")
    with pytest.raises(SystemExit, match="LABEL=PATH:CONFIG"):
        plot.main([f"A={raw}", "--out", str(tmp_path / "d.png")])
    with pytest.raises(SystemExit, match="since suite v9"):
        plot.main([f"A={raw}:default", "--out", str(tmp_path / "d.png")])
