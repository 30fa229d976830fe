"""benchmarks/quality/plot_suite_sizing.py: reads the named config at the named length from each summary, and
refuses a preset given without a summary that exists."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.eval.conftest import load_script, write_rows

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "quality" / "plot_suite_sizing.py"
FIELDS = ["config", "form", "metric", "family", "eval_len", "mean", "se"]


@pytest.fixture(scope="module")
def plot():
    yield from load_script(SCRIPT)


def _summary(path: Path, rows: list[tuple]) -> Path:
    return write_rows(path, FIELDS, rows)


def test_reads_the_config_at_the_length_and_draws(plot, tmp_path):
    path = _summary(tmp_path / "s.csv", [
        ("dense", "sup", "exact_match", "recall", 16384, 0.03, 0.01),
        ("dense", "sup", "exact_match", "recall", 8192, 0.5, 0.0),  # another length
        ("keep50", "sup", "exact_match", "recall", 16384, 0.7, 0.0),  # another config
        ("dense", "sup", "ppl", "-", 16384, 55.0, 1.0),  # not a metric the figure draws
        ("dense", "text", "token_accuracy", "multikey", 16384, 0.59, ""),
    ])  # fmt: skip
    scores = plot.read(path, "dense", 16384)
    assert scores == {
        ("sup", "exact_match", "recall"): (0.03, 0.01),
        ("text", "token_accuracy", "multikey"): (0.59, 0),
    }
    out = tmp_path / "fig.png"
    assert plot.main([f"v6={path}", "--out", str(out)]) == 0 and out.stat().st_size > 0


def test_a_preset_without_a_summary_is_refused_with_the_form_to_use(plot, tmp_path):
    with pytest.raises(SystemExit, match="NAME=PATH"):
        plot.main([str(tmp_path / "missing.csv"), "--out", str(tmp_path / "f.png")])


def test_a_raw_csv_is_summarized_and_a_run_may_name_its_own_config(plot, tmp_path):
    """A sizing call's merged CSV has one row a seed and names each variant's runs dense:VARIANT."""
    rows = [
        row
        for seed, v in ((0, 0.2), (1, 0.4))
        for row in (
            ["dense:B_csv", "sup", seed, "exact_match", "kv", 16384, v],
            ["dense:A_pydict", "sup", seed, "exact_match", "kv", 16384, 0.0],
        )
    ]
    raw = write_rows(
        tmp_path / "sizing.csv", ["config", "form", "seed", "metric", "family", "eval_len", "value"], rows
    )
    assert plot.parse_run(f"B={raw}:dense:B_csv", "dense", 16384) == ("B", raw, "dense:B_csv", 16384)
    assert plot.parse_run(f"B={raw}", "dense", 16384) == ("B", raw, "dense", 16384)
    # a run trained (and scored) at another length names it
    assert plot.parse_run(f"B={raw}:dense:B_csv@4096", "dense", 16384) == ("B", raw, "dense:B_csv", 4096)
    with pytest.raises(SystemExit, match="@LENGTH"):
        plot.parse_run(f"B={raw}@4K", "dense", 16384)
    mean, se = plot.read(raw, "dense:B_csv", 16384)[("sup", "exact_match", "kv")]
    assert mean == pytest.approx(0.3) and se == pytest.approx(0.1)
    out = tmp_path / "fig.png"
    assert plot.main([f"A={raw}:dense:A_pydict", f"B={raw}:dense:B_csv", "--out", str(out)]) == 0
