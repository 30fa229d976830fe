"""benchmarks/quality/plot_suite_frontier.py: GPU time from the speed run's own ratio, suite points as the report
computes them (per seed the mean over families, then over seeds), and the figure written beside the CSV."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.eval.conftest import load_script, write_dicts

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "quality" / "plot_suite_frontier.py"


@pytest.fixture(scope="module")
def plot():
    yield from load_script(SCRIPT)


def test_ratio_points_and_figure(plot, tmp_path):
    speed = write_dicts(tmp_path / "speed.csv", [
        # a row whose labelling was not recorded counts for neither form, though it comes first
        {"config": "liger-lemo+gc", "seq_len": 16384, "median_step_s": 0.1, "commit": "abc1", "status": "ok",
         "completion": ""},
        {"config": "liger-exact", "seq_len": 16384, "median_step_s": 2.0, "commit": "abc1", "status": "ok",
         "completion": "0.02"},
        {"config": "liger-lemo+gc", "seq_len": 16384, "median_step_s": 1.6, "commit": "abc1", "status": "ok",
         "completion": "0.02"},
        {"config": "liger-lemo+gc", "seq_len": 16384, "median_step_s": 1.0, "commit": "zzz9", "status": "ok",
         "completion": "0.02"},
        {"config": "liger-exact", "seq_len": 32768, "median_step_s": 5.0, "commit": "abc1", "status": "ok",
         "keep_ratio": "1.0", "completion": "0.02"},
        {"config": "liger-lemo+gc", "seq_len": 32768, "median_step_s": 4.0, "commit": "abc1", "status": "ok",
         "keep_ratio": "0.6", "completion": "0.02"},
        {"config": "liger-lemo+gc", "seq_len": 32768, "median_step_s": 3.5, "commit": "abc1", "status": "ok",
         "keep_ratio": "0.5", "completion": "0.02"},
        # plain text (every position labelled) in the same run: its own step, for the text form only
        {"config": "liger-exact", "seq_len": 16384, "median_step_s": 2.5, "commit": "abc1", "status": "ok",
         "completion": "0.0"},
        {"config": "liger-lemo+gc", "seq_len": 16384, "median_step_s": 2.25, "commit": "abc1", "status": "ok",
         "completion": "0.0"},
    ])  # fmt: skip
    rows = []
    for config, steps, values in (
        ("dense", 60, (0.2, 0.4)),
        ("dense@48", 48, (0.1, 0.3)),
        ("lemo", 60, (0.3, 0.5)),
    ):
        for seed, base in enumerate(values):
            for family, value in (("a", base), ("b", base + 0.2)):
                rows.append({"config": config, "form": "sup", "seed": seed, "steps": steps, "metric": "exact_match",
                             "family": family, "eval_len": 16384, "value": value})  # fmt: skip
    suite = write_dicts(tmp_path / "suite.csv", rows)
    # the ratio comes from the named run only (another commit's faster row is not mixed in)
    assert plot.step_ratio(plot.load(speed), "liger-lemo+gc", "abc", 16384) == pytest.approx(0.8)
    # BENCH/KEEP@T: the row at that keep and length, against liger-exact at the same length
    assert plot.step_ratio(plot.load(speed), "liger-lemo+gc/0.5@32768", "abc", 16384) == pytest.approx(0.7)
    assert plot.step_ratio(plot.load(speed), "liger-lemo+gc/0.6@32768", "abc", 16384) == pytest.approx(0.8)
    # %TAIL: that share of the steps at the same bench's keep-1.0 row (here liger-lemo+gc/1.0 at 32K: 4.5 s)
    dense_step = {"config": "liger-lemo+gc", "seq_len": 32768, "median_step_s": 4.5, "commit": "abc1",
                  "status": "ok", "keep_ratio": "1.0", "completion": "0.02"}  # fmt: skip
    tailed = plot.load(speed) + [{k: str(v) for k, v in dense_step.items()}]
    ratio = plot.step_ratio(tailed, "liger-lemo+gc/0.5@32768%0.2", "abc", 16384)
    assert ratio == pytest.approx(0.8 * 0.7 + 0.2 * 0.9)
    # %TAIL#COMMIT: the keep-1.0 row from another run (here 5.0 s over that run's own liger-exact of 4.0 s)
    other = [{"config": "liger-lemo+gc", "seq_len": "32768", "median_step_s": "5.0", "commit": "def2",
              "status": "ok", "keep_ratio": "1.0", "completion": "0.02"},
             {"config": "liger-exact", "seq_len": "32768", "median_step_s": "4.0", "commit": "def2",
              "status": "ok", "completion": "0.02"}]  # fmt: skip
    ratio = plot.step_ratio(plot.load(speed) + other, "liger-lemo+gc/0.5@32768%0.2#def", "abc", 16384)
    assert ratio == pytest.approx(0.8 * 0.7 + 0.2 * 1.25)
    # the text form takes the plain-text rows' ratio, never the prompt/completion one, nor an unlabelled row
    assert plot.step_ratio(plot.load(speed), "liger-lemo+gc", "abc", 16384, "text") == pytest.approx(0.9)
    with pytest.raises(SystemExit, match="on text rows"):
        plot.step_ratio(plot.load(speed), "liger-lemo+gc/0.5@32768", "abc", 16384, "text")
    points = plot.suite_points(plot.load(suite), "sup", 16384, "exact_match")
    steps, mean, se = points["lemo"]
    assert (steps, mean, se) == (60, pytest.approx(0.5), pytest.approx(0.1))  # seeds 0.4 and 0.6
    assert (
        plot.main([str(suite), "--speed", str(speed), "--commit", "abc", "--bench", "lemo=liger-lemo+gc"])
        == 0
    )
    assert (tmp_path / "suite_frontier.png").stat().st_size > 0
    text_rows = [{**r, "form": "text"} for r in rows]
    text = write_dicts(tmp_path / "text.csv", text_rows)
    args = ["--speed", str(speed), "--commit", "abc", "--bench", "lemo=liger-lemo+gc", "--form", "text"]
    assert plot.main([str(text), *args]) == 0
    assert (tmp_path / "text_text_frontier.png").stat().st_size > 0  # its own name: the sup figure stays
    with pytest.raises(SystemExit, match="check --commit"):
        plot.step_ratio(plot.load(speed), "liger-lemo+gc", "nope", 16384)
    # #COMMIT names the bench's own run, whatever the default commit: zzz9 has no liger-exact row, abc1 does
    assert plot.step_ratio(plot.load(speed), "liger-lemo+gc#abc", "zzz", 16384) == pytest.approx(0.8)
    with pytest.raises(SystemExit, match="commit zzz"):
        plot.step_ratio(plot.load(speed), "liger-lemo+gc#zzz", "abc", 16384)


def test_speed_rows_from_several_csvs(plot, tmp_path):
    """A bench timed in another run's CSV: --speed takes both files, and the bench names its run."""
    common = {"status": "ok", "completion": "0.02", "seq_len": 16384}
    first = write_dicts(tmp_path / "a.csv", [
        {"config": "liger-exact", "median_step_s": 2.0, "commit": "aaa", **common},
        {"config": "liger-lemo+gc", "median_step_s": 1.4, "commit": "aaa", **common},
    ])  # fmt: skip
    second = write_dicts(tmp_path / "b.csv", [
        {"config": "liger-exact", "median_step_s": 4.0, "commit": "bbb", **common},
        {"config": "liger-bwd+gc", "median_step_s": 3.96, "commit": "bbb", **common},
    ])  # fmt: skip
    rows = [{"config": c, "form": "sup", "seed": seed, "steps": 60, "metric": "exact_match", "family": "a",
             "eval_len": 16384, "value": 0.1 * seed} for c in ("dense", "lemo", "bwd") for seed in (0, 1)]  # fmt: skip
    suite = write_dicts(tmp_path / "s.csv", rows)
    args = ["--speed", str(first), str(second), "--commit", "aaa", "--bench", "lemo=liger-lemo+gc",
            "bwd=liger-bwd+gc#bbb"]  # fmt: skip
    both = plot.load(first) + plot.load(second)
    assert plot.step_ratio(both, "liger-bwd+gc#bbb", "aaa", 16384) == pytest.approx(0.99)  # bbb's own exact
    assert plot.step_ratio(both, "liger-lemo+gc", "aaa", 16384) == pytest.approx(0.7)
    assert plot.main([str(suite), *args]) == 0
    assert (tmp_path / "s_frontier.png").stat().st_size > 0


def test_seeds_and_the_legend_name_of_a_tailed_spec(plot, tmp_path):
    """--seeds draws only those seeds (a run resumed with more seeds of some configs) into a figure of its own
    name; a seed the run lacks is named. The legend names the sparse row's run and the dense tail's apart."""
    common = {"status": "ok", "completion": "0.02", "seq_len": 16384, "commit": "aaa"}
    speed = write_dicts(tmp_path / "a.csv", [
        {"config": "liger-exact", "median_step_s": 2.0, **common},
        {"config": "liger-lemo+gc", "median_step_s": 1.5, **common},
    ])  # fmt: skip
    rows = [{"config": c, "form": "sup", "seed": seed, "steps": 60, "metric": "exact_match", "family": "a",
             "eval_len": 16384, "value": 0.1 * seed} for c in ("dense", "lemo") for seed in (0, 1, 2)]  # fmt: skip
    suite = write_dicts(tmp_path / "s.csv", rows)
    args = [str(suite), "--speed", str(speed), "--commit", "aaa", "--bench", "lemo=liger-lemo+gc"]
    assert plot.main([*args, "--seeds", "1", "2"]) == 0
    assert (tmp_path / "s_seeds12_frontier.png").stat().st_size > 0
    assert not (tmp_path / "s_frontier.png").exists()  # the all-seeds figure is not overwritten
    with pytest.raises(SystemExit, match="check --seeds"):
        plot.main([*args, "--seeds", "7"])
    assert plot.spec_label("b+gc/0.5#e1%0.15#t2", "c0") == "b+gc/0.5, e1; last 15% at keep 1.0, t2"
    assert plot.spec_label("b+gc/0.6", "c0") == "b+gc/0.6, c0"
