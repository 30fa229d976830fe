"""`Flag`: how a config field is spelled on the command line when its type alone does not say it, written on the
field as `Annotated[T, Flag(...)]`; and the parse functions of lemo's own value syntaxes.

The CLI generator (`lemo.utils.argparser`) makes one flag per field from its type: `bool` -> `--x/--no-x`,
`int`/`float`/`str` -> one value, `Literal[...]` -> choices, `list[T]` -> one or more values, `tuple[T, T]` ->
two, `T | None` -> `T`, a nested config section -> its own fields' flags under a prefix (`lora` -> `--lora-rank`).
A `Flag` carries the exceptions. It is plain data: nothing here knows argparse, so the config package stays at
the bottom of the layering, and `typing.get_type_hints` (what `from_dict` type-checks with) drops it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# The named sparse-layer sets (SparsityConfig.sparse_layers resolves them per model).
LAYER_SETS = ("auto", "upper", "all", "none")


@dataclass(frozen=True)
class Flag:
    """Command-line exceptions of one config field (`Annotated[T, Flag(...)]`)."""

    names: tuple[str, ...] = ()
    """More spellings of the flag besides `--field-name` (e.g. a former name kept working)."""
    metavar: str | None = None
    """The value's name in `--help` (default: the field name in capitals)."""
    parse: Callable[[str], Any] | None = None
    """One command-line word -> the field's value, for syntaxes the type does not give (`0.5,0.4`); a ValueError
    it raises is the error message, so it should name the fix."""
    hidden: bool = False
    """Accepted, but not listed by `--help`."""
    help: str | None = None
    """The help text, instead of the field's docstring."""
    prefix: str | None = None
    """On a nested section: what goes before its fields' flags (default: the section's name and a dash, as in
    `--lora-rank`; "" flattens them, as in `--keep-ratio`)."""
    group: str | None = None
    """Fields with the same group are alternatives: at most one of their flags may be given."""


def flag_of(metadata: tuple[Any, ...]) -> Flag:
    """The `Flag` among a field's `Annotated` metadata (an empty one when there is none)."""
    return next((m for m in metadata if isinstance(m, Flag)), Flag())


def per_layer(text: str) -> float | list[float]:
    """ "0.4" -> 0.4; "0.5,0.4,0.3" -> [0.5, 0.4, 0.3] (one value per sparse layer)."""
    parts = [p for p in text.split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"{text!r} is not a number or a comma-separated list of numbers") from None
    if not values:
        raise ValueError(f"{text!r} is empty; pass a number such as 0.4 or one per sparse layer: 0.5,0.4")
    return values[0] if len(values) == 1 else values


def layer_set(text: str) -> str | list[int]:
    """A named layer set (`LAYER_SETS`), or layer indices and inclusive ranges: "10,11,12" or "10-12" ->
    [10, 11, 12]."""
    if text in LAYER_SETS:
        return text
    layers: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            first, dash, last = part.partition("-")  # "15-30" is a range; "15" a single layer
            lo, hi = int(first), int(last if dash else first)
            if hi < lo:
                raise ValueError(part)
            layers += range(lo, hi + 1)
    except ValueError:
        raise ValueError(
            f"{text!r}: use auto, upper, all, none, or layer indices and ranges such as 10,11,12 or 15-30"
        ) from None
    return layers
