"""`lemo bench`: a passthrough to the benchmark scripts of the source checkout (benchmarks/e2e)."""

import csv
from pathlib import Path

import pytest

from lemo.cli.__main__ import main
from lemo.cli.bench import HOW_TO_GET_IT, find_script

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_bench_dir(monkeypatch):
    """The developer's own LEMO_BENCH_DIR must not leak into the tests."""
    monkeypatch.delenv("LEMO_BENCH_DIR", raising=False)


def test_finds_the_checkout_next_to_the_package(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the cwd fallback: the editable install's checkout
    assert find_script("bench.py") == REPO / "benchmarks" / "e2e" / "bench.py"
    assert find_script("plot.py") == REPO / "benchmarks" / "e2e" / "plot.py"


def test_help_is_the_scripts_own(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--shape" in out and "--lengths" in out and "--configs" in out


def test_plot_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "plot", "--help"])
    assert exit_info.value.code == 0
    assert "--out-dir" in capsys.readouterr().out


def test_lemo_help_lists_bench(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "bench" in capsys.readouterr().out


def test_runs_a_tiny_benchmark_on_cpu(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # so the recorded command is the repo-relative script path
    out = tmp_path / "x.csv"
    argv = ["--shape", "tiny", "--lengths", "128", "--configs", "lora", "lemo"]
    argv += ["--steps", "1", "--warmup", "0", "--out", str(out)]
    assert main(["bench", *argv]) == 0
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["config"], r["seq_len"], r["status"]) for r in rows] == [
        ("lora", "128", "ok"),
        ("lemo", "128", "ok"),
    ]
    assert all(float(r["median_step_s"]) > 0 for r in rows)
    # The CSV names the script itself, so the row reproduces without lemo's CLI.
    assert rows[0]["command"].startswith("python benchmarks/e2e/bench.py --shape tiny")


def test_arguments_pass_through_unchanged(tmp_path, monkeypatch, capsys):
    (tmp_path / "bench.py").write_text(
        "import sys\ndef main(argv):\n    print('bench', argv, sys.argv[0])\n    return 3\n"
    )
    (tmp_path / "plot.py").write_text("def main(argv):\n    print('plot', argv)\n    return 0\n")
    monkeypatch.setenv("LEMO_BENCH_DIR", str(tmp_path))
    assert main(["bench", "--weird", "x", "-h2"]) == 3
    assert main(["bench", "plot", "a.csv", "--prefix", "p"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("bench ['--weird', 'x', '-h2'] ")
    assert out[1] == "plot ['a.csv', '--prefix', 'p']"


def test_script_argv_is_restored(tmp_path, monkeypatch, capsys):
    import sys

    (tmp_path / "bench.py").write_text("import sys\ndef main(argv):\n    print(sys.argv)\n    return 0\n")
    monkeypatch.setenv("LEMO_BENCH_DIR", str(tmp_path))
    before = sys.argv[:]
    assert main(["bench", "--steps", "2"]) == 0
    assert sys.argv == before
    assert f"{tmp_path / 'bench.py'}', '--steps', '2']" in capsys.readouterr().out


def test_without_a_checkout_exit_2_with_instructions(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LEMO_BENCH_DIR", str(tmp_path))  # empty: the only place looked when set
    assert main(["bench", "--shape", "tiny"]) == 2
    err = capsys.readouterr().err
    assert HOW_TO_GET_IT in err
    assert "git clone" in err and "LEMO_BENCH_DIR" in err and str(tmp_path / "bench.py") in err
    assert main(["bench", "plot", "x.csv"]) == 2
    assert str(tmp_path / "plot.py") in capsys.readouterr().err
