"""`lemo bench`: run the end-to-end benchmark scripts of a source checkout, with their own flags.

The scripts stay in `benchmarks/e2e/` (they are not part of the installed package), so this module only finds
and loads them:

    lemo bench [bench.py flags]        -> benchmarks/e2e/bench.py   main(flags)
    lemo bench plot [plot.py flags]    -> benchmarks/e2e/plot.py    main(flags)

Where the scripts are looked for, first match wins:
    1. $LEMO_BENCH_DIR (when set, it is the only place: a wrong setting fails loudly instead of silently
       running another checkout's benchmark)
    2. the source checkout next to the installed package (`pip install -e .` of a clone)
    3. ./benchmarks/e2e
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import lemo

SCRIPTS = {"bench": "bench.py", "plot": "plot.py"}
HOW_TO_GET_IT = (
    "lemo bench runs the benchmark suite of a source checkout: git clone the repo and `pip install -e .`, "
    "or set LEMO_BENCH_DIR to its benchmarks/e2e"
)


def candidate_dirs() -> list[Path]:
    """The directories searched for the scripts, in order."""
    explicit = os.environ.get("LEMO_BENCH_DIR")
    if explicit:
        return [Path(explicit).expanduser()]
    # src/lemo/__init__.py -> parents[2] is the checkout root of an editable install.
    checkout = Path(lemo.__file__).resolve().parents[2] / "benchmarks" / "e2e"
    return [checkout, Path.cwd() / "benchmarks" / "e2e"]


def find_script(name: str) -> Path:
    """Path of `name` (bench.py or plot.py) in the first candidate directory that has it."""
    dirs = candidate_dirs()
    for d in dirs:
        if (d / name).is_file():
            return d / name
    looked = ", ".join(str(d / name) for d in dirs)
    raise FileNotFoundError(f"{HOW_TO_GET_IT} (looked for {looked})")


def load(path: Path) -> ModuleType:
    """Import a script file as a module under a name derived from its path (two checkouts never collide)."""
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    name = f"_lemo_e2e_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    # Registered before exec, as a normal import would be: dataclasses and pickling look modules up by name.
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _shown(path: Path) -> str:
    """The script path as a user would type it: relative to the working directory when under it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


@contextlib.contextmanager
def _script_argv(argv: list[str]) -> Iterator[None]:
    """Make sys.argv what it would be under `python SCRIPT ARGS` for the duration of a script run.

    The scripts read sys.argv[0] for argparse's `usage:` line and for the `command` column of their CSVs,
    which must name the script actually run, so a result can be reproduced without lemo's CLI.
    """
    saved = sys.argv[:]
    sys.argv[:] = argv
    try:
        yield
    finally:
        sys.argv[:] = saved


def run(argv: list[str]) -> int:
    """`lemo bench ARGV`: dispatch to bench.py, or to plot.py when ARGV starts with `plot`; return the exit code.

    argparse's own exits (`--help`, bad flags) propagate as SystemExit, like every other lemo subcommand.
    """
    script, rest = ("plot", argv[1:]) if argv[:1] == ["plot"] else ("bench", argv)
    try:
        path = find_script(SCRIPTS[script])
    except FileNotFoundError as err:
        print(f"lemo bench: error: {err}", file=sys.stderr)
        return 2
    module = load(path)
    with _script_argv([_shown(path), *rest]):
        code = module.main(list(rest))
    return int(code or 0)
