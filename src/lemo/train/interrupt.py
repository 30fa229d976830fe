"""Ctrl-C during training: finish the current step, save a checkpoint, then stop with the resume command."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class TrainingInterrupted(Exception):
    """Raised after a Ctrl-C once the checkpoint of `step` is saved; `resume_command` continues the run.

    Not a RuntimeError: the CLI exits 130 (the shell's code for SIGINT) on it, not 2 as for bad input.
    """

    def __init__(self, step: int, resume_command: str) -> None:
        super().__init__(f"interrupted: checkpoint saved at step {step}; continue with:\n  {resume_command}")
        self.step = step
        self.resume_command = resume_command


@dataclass
class StopFlag:
    requested: bool = False


@contextmanager
def stop_on_sigint() -> Iterator[StopFlag]:
    """While active, the first SIGINT only sets the flag (the loop checks it after each step); a second one
    raises KeyboardInterrupt at once, for when the step itself hangs."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be installed from the main thread
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame) -> None:
        flag.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print(
            "\nCtrl-C: saving a checkpoint after this step (press Ctrl-C again to stop at once, losing it)",
            file=sys.stderr,
            flush=True,
        )

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
