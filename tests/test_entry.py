"""The `lemo` console script: `import lemo` loads no torch, so a Ctrl-C while the CLI imports ends quietly."""

import subprocess
import sys

from lemo.cli import entry


def test_import_lemo_loads_no_torch():
    code = "import sys, lemo; print('torch' in sys.modules, lemo.SparsityConfig().keep_ratio)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "0.6"]


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
