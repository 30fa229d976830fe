"""`lemo bench`: the end-to-end benchmark of the installed package (`lemo.bench`), with its own flags.

    lemo bench [flags]          -> lemo.bench.run.main(flags)    (`lemo bench --help` lists them)
    lemo bench plot [flags]     -> lemo.bench.plot.main(flags)

The flags are handed over unparsed: lemo.bench.run parses them (--help included) into a `BenchConfig` with the
generator every command uses (lemo.utils.argparser). This module only dispatches and turns the benchmark's
expected failures into one-line errors, as every lemo subcommand does.
"""

from __future__ import annotations

import sys


def run(argv: list[str]) -> int:
    """`lemo bench ARGV`: the benchmark, or its figures when ARGV starts with `plot`; the exit code.

    argparse's own exits (`--help`, bad flags) propagate as SystemExit, like every other lemo subcommand.
    """
    # Imported here, not at module level: `lemo --help` and the other subcommands need neither.
    if argv[:1] == ["plot"]:
        from lemo.bench import plot

        return int(plot.main(list(argv[1:]), prog="lemo bench plot") or 0)
    from lemo.bench import run as bench

    try:
        return int(bench.main(list(argv), prog="lemo bench") or 0)
    except (ValueError, OSError, RuntimeError) as err:  # a bad --model directory, an unreadable --out, ...
        print(f"lemo bench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the rows measured so far are already in the CSV (one append per row)
        print("lemo bench: interrupted", file=sys.stderr)
        return 130
