"""`python -m lemo ...` and `torchrun --nproc-per-node N -m lemo finetune ...`: the same CLI as `lemo`."""

import sys

from lemo.cli.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
