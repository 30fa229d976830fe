"""The `lemo` console script: the CLI, and a quiet exit for a Ctrl-C while it is still importing.

Importing torch, transformers and peft takes seconds before `main` runs; a Ctrl-C then would print a
KeyboardInterrupt traceback from the import machinery. `import lemo` itself loads no torch (see lemo/__init__.py),
so this module can catch it.
"""

from __future__ import annotations

import sys


def main() -> int:
    try:
        from lemo.cli.__main__ import main as run
    except KeyboardInterrupt:
        print("lemo: interrupted", file=sys.stderr)
        return 130
    return run()


if __name__ == "__main__":
    sys.exit(main())
