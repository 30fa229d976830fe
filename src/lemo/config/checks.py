"""Validation helpers of the config classes. Every message names the fix in the spelling a user types: a flag
(`--seq-len 0 ...`) or a keyword (`PredictorConfig.mid=0 ...`), because a bad value found half an hour into a run
is the most expensive kind of error."""

from __future__ import annotations

import math
from typing import Any


def _named(label: str, value: Any) -> str:
    # A flag is followed by its value as typed on the command line; a keyword by `=`.
    return f"{label} {value!r}" if label.startswith("--") else f"{label}={value!r}"


def flag(name: str) -> str:
    """The command-line spelling of a field: `seq_len` -> `--seq-len`."""
    return "--" + name.replace("_", "-")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; use one of {', '.join(map(repr, choices))}.")


def check_fraction(name: str, value: float, *, allow_zero: bool = False) -> None:
    low_ok = value >= 0.0 if allow_zero else value > 0.0
    if not (isinstance(value, (int, float)) and math.isfinite(value) and low_ok and value <= 1.0):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(
            f"{name}={value!r} is outside {interval}; pass a fraction such as 0.4 (1.0 keeps everything)."
        )


def check_positive(
    label: str, value: Any, what: str, *, integer: bool = True, optional: bool = False
) -> None:
    """Refuse `value` unless it is a positive integer (`integer=False`: a positive number), or None when
    `optional`. `label` is the flag or keyword the user typed; `what` ends the message, e.g. "a positive number
    of tokens such as 32768"."""
    if value is None and optional:
        return
    number = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    if not (number and value > 0):
        raise ValueError(f"{_named(label, value)} must be {what}.")
