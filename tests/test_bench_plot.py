"""lemo.bench.plot (`lemo bench plot`): figures from e2e result CSVs (step and longest-T CSVs), written as PNGs."""

import csv
from pathlib import Path

import pytest

from lemo.bench import plot
from lemo.bench.run import FIELDS, LONGEST_FIELDS
from lemo.cli.__main__ import main as lemo_main

# The headers the benchmark writes: the plots are tested against what it produces.
STEP_HEADER = FIELDS
LONGEST_HEADER = LONGEST_FIELDS


def write_csv(path: Path, header: list[str], rows: list[dict]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def step_row(config: str, T: int, mem: float | None, step_s: float | None, **extra) -> dict:
    ok = mem is not None
    row = {
        "config": config,
        "shape": "llama3-8b",
        "seq_len": T,
        "keep_ratio": 0.4 if config.startswith("lemo") else 1.0,
        "backend": "auto",
        "status": "ok" if ok else "OOM",
        "peak_alloc_gib": mem if ok else "",
        "peak_reserved_gib": mem * 1.1 if ok else "",
        "median_step_s": step_s if ok else "",
        "tokens_per_s": T / step_s if ok else "",
        "gpu": "NVIDIA H200",
        "torch": "2.11.0",
        "commit": "abc1234",
    }
    return {**row, **extra}


def step_rows() -> list[dict]:
    return [
        step_row("lora", 8192, 77.0, 0.75),
        step_row("lora", 16384, None, None),
        step_row("lora+gc", 8192, 29.0, 0.99),
        step_row("lora+gc", 16384, 42.8, 2.26),
        step_row("exact", 8192, 19.4, 0.98),
        step_row("exact", 16384, 23.7, 2.23),
        step_row("exact", 32768, 32.2, 5.58),
        step_row("lemo", 8192, 59.9, 0.67),
        step_row("lemo", 16384, 104.3, 1.49),
        step_row("lemo", 32768, None, None),
        step_row("lemo+gc", 8192, 19.4, 0.88),
        step_row("lemo+gc", 16384, 23.7, 1.95),
        step_row("lemo+gc", 32768, 32.2, 4.66),
        step_row("lemo+sgc", 8192, 25.0, 0.75),
        step_row("lemo+sgc", 16384, 40.0, 1.70),
    ]


@pytest.fixture
def step_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "e2e.csv", STEP_HEADER, step_rows())


@pytest.fixture
def longest_csv(tmp_path: Path) -> Path:
    rows = [
        {"config": "lora+gc", "longest_ok_T": 32768, "first_oom_T": 65536, "peak_alloc_gib": 70.6},
        {"config": "exact", "longest_ok_T": 65536, "first_oom_T": 98304, "peak_alloc_gib": 49.4},
        {"config": "lemo-shared+gc", "longest_ok_T": 98304, "first_oom_T": 106496, "peak_alloc_gib": 66.1},
        {
            "config": "lemo-shared+sgc",
            "longest_ok_T": 131072,
            "first_oom_T": "",
            "peak_alloc_gib": 72.0,
            "probes": "65536:ok 131072:ok",
        },
    ]
    common = {"shape": "llama3-8b", "cap_gib": 80, "gpu": "NVIDIA H200", "commit": "abc1234"}
    for r in rows:
        r.update(common, median_step_s=10.0, keep_ratio=0.4 if r["config"].startswith("lemo") else 1.0)
    return write_csv(tmp_path / "e2e_longest.csv", LONGEST_HEADER, rows)


def assert_png(path: Path) -> None:
    assert path.is_file(), f"{path} was not written"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5_000, f"{path} is suspiciously small"


def test_step_csv_gives_memory_and_step_time_figures(step_csv, tmp_path, capsys):
    out = tmp_path / "figs"
    assert plot.main([str(step_csv), "--out-dir", str(out), "--prefix", "e2e_test"]) == 0
    assert_png(out / "e2e_test_memory.png")
    assert_png(out / "e2e_test_step_time.png")
    assert "wrote" in capsys.readouterr().out


def test_longest_csv_gives_a_bar_chart(longest_csv, tmp_path):
    out = tmp_path / "figs"
    assert plot.main([str(longest_csv), "--out-dir", str(out), "--prefix", "e2e_test"]) == 0
    assert_png(out / "e2e_test_longest_T.png")


def test_both_kinds_in_one_call(step_csv, longest_csv, tmp_path):
    out = tmp_path / "figs"
    assert plot.main([str(step_csv), str(longest_csv), "--out-dir", str(out), "--prefix", "p"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["p_longest_T.png", "p_memory.png", "p_step_time.png"]


def test_bar_notes_name_the_value_and_the_first_oom():
    row = {"peak_alloc_gib": "66.1", "median_step_s": "12.3", "first_oom_T": "131072"}
    assert plot._bar_note(row, 98304) == "96K · 66.1 GiB · 12.3 s/step · first OOM at 128K"
    assert plot._bar_note({**row, "first_oom_T": ""}, 98304) == "96K · 66.1 GiB · 12.3 s/step"
    assert plot._bar_note(row, 0) == "nothing fits · first OOM at 128K"
    searched = {**row, "first_oom_T": "", "probes": "65536:ok 131072:ok 98304:ok"}
    assert plot._bar_note(searched, 131072) == "128K · 66.1 GiB · 12.3 s/step · no OOM up to 128K"


def test_checkpointing_modes_from_config_names():
    names = ("lora", "lora+gc", "exact", "lemo-shared+sgc", "abl-mlp-dense+gc", "liger-exact", "liger-lemo")
    modes = {c: plot.checkpointing(c) for c in names}
    assert modes == {
        "lora": "none",
        "lora+gc": "all",
        "exact": "all",
        "lemo-shared+sgc": "sparse",
        "abl-mlp-dense+gc": "all",
        "liger-exact": "all",  # exact's Liger twin: checkpointed like exact
        "liger-lemo": "none",
    }
    # Every config's name tells its checkpointing as the table does (the figures read names from CSVs).
    from lemo.bench.configs import CONFIGS

    for name, (gc, *_rest) in CONFIGS.items():
        assert plot.checkpointing(name) == (gc or "none"), name
    rows = [{"config": c, "keep_ratio": "0.4"} for c in ("lemo-shared", "lemo-shared+gc", "lemo-shared+sgc")]
    assert len({plot.family(r) for r in rows}) == 1  # one colour; the line style tells them apart


def test_several_gpus_get_one_figure_each(tmp_path):
    rows = step_rows() + [step_row("lora", 8192, 60.0, 1.5, gpu="NVIDIA H100 80GB HBM3")]
    path = write_csv(tmp_path / "mixed.csv", STEP_HEADER, rows)
    out = tmp_path / "figs"
    assert plot.main([str(path), "--out-dir", str(out), "--prefix", "m"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "m_llama3-8b_nvidia_h100_80gb_hbm3_memory.png",
        "m_llama3-8b_nvidia_h100_80gb_hbm3_step_time.png",
        "m_llama3-8b_nvidia_h200_memory.png",
        "m_llama3-8b_nvidia_h200_step_time.png",
    ]


def test_later_rows_supersede_earlier_ones(tmp_path):
    first = write_csv(tmp_path / "old.csv", STEP_HEADER, [step_row("lora", 8192, 77.0, 0.75)])
    second = write_csv(
        tmp_path / "new.csv", STEP_HEADER, [step_row("lora", 8192, 70.0, 0.70, commit="def5678")]
    )
    rows = plot.read_csv(first, 0)[1] + plot.read_csv(second, 1)[1]
    kept = plot.latest(rows, plot.step_key)
    assert [(r["peak_alloc_gib"], r["commit"]) for r in kept] == [("70.0", "def5678")]
    # Another keep ratio is another measurement, not a rerun.
    other = {**rows[0], "keep_ratio": "0.6", "config": "lemo"}
    lemo = {**rows[0], "keep_ratio": "0.4", "config": "lemo"}
    assert len(plot.latest([lemo, other], plot.step_key)) == 2


def test_titles_trace_commits_in_file_order(step_csv, tmp_path):
    newer = write_csv(
        tmp_path / "newer.csv", STEP_HEADER, [step_row("exact", 65536, 49.4, 15.6, commit="fff0000")]
    )
    rows = plot.read_csv(step_csv, 0)[1] + plot.read_csv(newer, 1)[1]
    line = plot.provenance(plot.latest(rows, plot.step_key))
    assert line.startswith("commits abc1234, fff0000")
    assert "e2e.csv, newer.csv" in line


def test_shape_and_config_filters(step_csv, tmp_path, capsys):
    out = tmp_path / "figs"
    argv = [str(step_csv), "--out-dir", str(out), "--configs", "lora", "lemo", "--shape", "llama3-8b"]
    assert plot.main(argv) == 0
    assert plot.main([str(step_csv), "--out-dir", str(out), "--shape", "llama2-7b"]) == 2
    assert "no step rows left" in capsys.readouterr().err


def test_missing_columns_are_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("config,seq_len,peak_alloc_gib\nlora,8192,70\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) shape, status, median_step_s, gpu, commit"):
        plot.read_csv(bad)
    assert plot.main([str(bad), "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "missing column(s)" in err
    assert not list(tmp_path.glob("*.png"))


def test_token_labels():
    assert [plot.tokens(t) for t in (128, 4096, 8192, 98304, 1536, 2**20)] == [
        "128",
        "4K",
        "8K",
        "96K",
        "1.5K",
        "1M",
    ]


def test_coinciding_curves_are_named():
    rows = [r for r in step_rows() if r["config"] in ("exact", "lemo+gc", "lora+gc")]
    rows = [{k: str(v) for k, v in r.items()} for r in rows]
    assert plot.coinciding(rows, "peak_alloc_gib") == [["exact", "lemo+gc (keep 0.4)"]]


def test_lemo_bench_plot_needs_no_checkout(step_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the installed package alone, from a directory with no benchmarks/ in it
    monkeypatch.delenv("LEMO_BENCH_DIR", raising=False)
    assert lemo_main(["bench", "plot", str(step_csv), "--out-dir", "figs", "--prefix", "p"]) == 0
    assert_png(tmp_path / "figs" / "p_memory.png")
    assert "wrote figs/p_memory.png" in capsys.readouterr().out
    assert lemo_main(["bench", "plot", str(tmp_path / "missing.csv"), "--out-dir", "figs"]) == 2
    assert capsys.readouterr().err.startswith("lemo bench plot: error: ")


def test_a_search_over_several_calls_is_one_search():
    from lemo.bench.rows import combine_longest

    base = {"shape": "s", "gpu": "g", "config": "exact+offload", "keep_ratio": "1.0", "cap_gib": "74.5"}
    calls = [
        {**base, "longest_ok_T": "0", "first_oom_T": "172032", "probes": "172032:OOM", "commit": "a"},
        {
            **base,
            "longest_ok_T": "163840",
            "first_oom_T": "",
            "probes": "131072:ok 163840:ok",
            "commit": "b",
            "peak_alloc_gib": "65.8",
            "median_step_s": "78.9",
        },
        {
            **base,
            "config": "lemo",
            "longest_ok_T": "229376",
            "probes": "229376:ok",
            "commit": "c",
            "peak_alloc_gib": "66.9",
        },
    ]
    exact, lemo = combine_longest(calls)
    assert (exact["longest_ok_T"], exact["first_oom_T"]) == ("163840", "172032")
    assert exact["probes"] == "131072:ok 163840:ok 172032:OOM" and exact["commit"] == "a b"
    assert exact["peak_alloc_gib"] == "65.8"  # from the call that ran the longest T
    assert (lemo["longest_ok_T"], lemo["first_oom_T"]) == ("229376", "")
    # an ok above the first failure does not count, and the measured columns then belong to no row's T
    odd = combine_longest([{**calls[1], "probes": "131072:OOM@60.0+4.0GiB 163840:ok"}])[0]
    assert (odd["longest_ok_T"], odd["first_oom_T"], odd["peak_alloc_gib"]) == ("0", "131072", "")


def test_an_oom_probe_says_what_was_allocated_and_what_was_asked():
    from lemo.bench.step import oom_detail

    cuda = "CUDA out of memory. Tried to allocate 3.50 GiB. GPU 0 has a total capacity of 139.81 GiB"
    assert oom_detail(cuda, 63.31) == "@63.3+3.5GiB"
    assert oom_detail("CUDA out of memory. Tried to allocate 512.00 MiB.", 10.0) == "@10.0+0.5GiB"
    assert oom_detail("out of memory", 10.0) == "@10.0GiB"  # no request in the message
    assert oom_detail(cuda, None) == ""  # off a GPU nothing is known
