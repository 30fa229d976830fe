"""Type checks for config values from YAML or the API, so `steps: ten` fails with a message, not a traceback.

Only the shapes configs use are checked (int, float, str, bool, None, Literal, list[...], tuple, unions of
those); anything else passes through to the dataclass's own checks.
"""

from __future__ import annotations

import types
import typing
from typing import Any


def coerce(value: Any, hint: Any) -> Any:
    """`value` if it fits `hint` (numeric strings such as "1e-4" become floats); else raise TypeError."""
    ok, out = _fit(value, hint)
    if not ok:
        raise TypeError(f"{value!r} is not {describe(hint)}")
    return out


def _fit(value: Any, hint: Any) -> tuple[bool, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return True, value
    if hint is type(None) or hint is None:
        return value is None, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        # PyYAML reads `1e-4` (no dot) as a string; accept what float() reads.
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return False, value
    if hint is str:
        return isinstance(value, str), value
    if origin is typing.Literal:
        return value in args, value
    if origin in (typing.Union, types.UnionType):
        for a in args:
            ok, out = _fit(value, a)
            if ok:
                return True, out
        return False, value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            return False, value
        item = args[0] if args else Any
        outs = []
        for v in value:
            ok, out = _fit(v, item)
            if not ok:
                return False, value
            outs.append(out)
        return True, outs if origin is list else tuple(outs)
    return True, value  # dataclasses and other hints: the dataclass checks them


def describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", type(None): "null"}
    if hint in names:
        return names[hint]
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {describe(args[0]).removeprefix('an ').removeprefix('a ')}s" if args else "a list"
    return str(hint)
