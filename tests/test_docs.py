"""The README keeps its promises: the two fresh-machine commands first, tables generated from committed CSVs."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_starts_with_the_two_commands():
    head = (REPO / "README.md").read_text().split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in head.splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_generated_tables_match_the_csvs():
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "report.py"), "--check", *map(str, docs)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_command_has_working_help(capsys):
    import pytest

    from lemo.cli.__main__ import COMMANDS, main

    for command in [*COMMANDS, "env"]:
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: lemo" in capsys.readouterr().out
    # `lemo bench` hands its flags to the benchmark scripts, whose help (and usage line) is their own.
    for argv, flag in ((["bench", "--help"], "--shape"), (["bench", "plot", "--help"], "--out-dir")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert "usage:" in out and flag in out
