"""The `lemo` console script: `import lemo` loads no torch, so a Ctrl-C while the CLI imports ends quietly; and
no public name is lost: every name of `lemo.__all__`, every config class, every command-line flag."""

import contextlib
import dataclasses
import io
import re
import subprocess
import sys
from pathlib import Path

import lemo
import lemo.config
from lemo.cli import entry
from lemo.cli.__main__ import main
from lemo.config import (
    BenchConfig,
    CalibrateConfig,
    DataConfig,
    EvalConfig,
    FinetuneConfig,
    LoraSettings,
    PlanConfig,
    PredictorConfig,
    PredictorTrainingConfig,
    SparsityConfig,
    SuiteConfig,
)


def test_import_lemo_loads_no_torch():
    code = "import sys, lemo; print('torch' in sys.modules, lemo.SparsityConfig().keep_ratio)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "0.5"]


def test_ctrl_c_while_importing_exits_130_without_a_traceback(monkeypatch, capsys):
    class Interrupting:
        def find_spec(self, name, path=None, target=None):
            if name == "lemo.cli.__main__":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "lemo.cli.__main__", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    assert entry.main() == 130
    assert capsys.readouterr().err == "lemo: interrupted\n"


def test_every_public_name_imports():
    # `lemo.__all__` is the documented Python API (docs/design.md section 3); lazy names import on first touch.
    missing = [name for name in lemo.__all__ if getattr(lemo, name, None) is None]
    assert not missing
    assert callable(lemo.calibrate) and callable(lemo.choose_keep_ratios) and callable(lemo.load_predictors)


def test_every_config_class_is_in_lemo_config():
    expected = {
        BenchConfig, CalibrateConfig, DataConfig, EvalConfig, FinetuneConfig, LoraSettings, PlanConfig, PredictorConfig,
        PredictorTrainingConfig, SparsityConfig, SuiteConfig,
    }  # fmt: skip
    assert set(lemo.config.CONFIGS) == expected and set(lemo.config.__all__) >= {c.__name__ for c in expected}
    for cls in expected:
        assert dataclasses.is_dataclass(cls) and issubclass(cls, lemo.config.DictConfig), cls
        assert cls.__module__.startswith("lemo.config."), cls  # defined there, not re-exported from elsewhere


def _usage_flags(argv: list[str]) -> set[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main([*argv, "--help"])
    usage = out.getvalue().split("\n\n", 1)[0]  # argparse's usage block names every option once
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", usage))


def test_no_command_line_flag_is_lost():
    expected: dict[str, set[str]] = {}
    for line in (Path(__file__).parent / "cli_flags.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            *command, flag = line.split()
            expected.setdefault(" ".join(command), set()).add(flag)
    lost = {command: sorted(flags - _usage_flags(command.split())) for command, flags in expected.items()}
    assert not any(lost.values()), lost
