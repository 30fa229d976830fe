"""The one way a config is built from data: `from_dict` (unknown keys refused, values type-checked and coerced,
nested sections built), the YAML loader, and `DictConfig`, the base every config class shares.

Type checks cover the shapes configs use (int, float, str, bool, None, Literal, list[...], tuple, unions of
those), so `steps: ten` fails with a message naming the field, not with a traceback from the dataclass's own
checks; anything else passes through to the dataclass.
"""

from __future__ import annotations

import types
import typing
from dataclasses import asdict, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from lemo.config.docs import document_fields

_C = TypeVar("_C", bound="DictConfig")


class DictConfig:
    """What every config class shares: `to_dict` / `from_dict` (`lemo.config.load.from_dict`), YAML files, and its
    field docs in `help()` (`document_fields`)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        document_fields(cls)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[_C], data: dict[str, Any]) -> _C:
        return from_dict(cls, data)

    def save_yaml(self, path: str | Path) -> None:
        import yaml  # only configs that are written to files need it

        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False), encoding="utf-8")

    def _build_sections(self) -> None:
        """Turn nested sections given as dicts (`lora={"rank": 4}`) into their dataclasses; `__post_init__`
        calls it first."""
        for f in fields(self):  # type: ignore[arg-type]
            value, default = getattr(self, f.name), _section_default(f)
            if is_dataclass(default) and isinstance(value, dict):
                setattr(self, f.name, from_dict(type(default), value, f"{f.name}."))


def _section_default(f: Any) -> Any:
    return f.default_factory() if callable(f.default_factory) else None


def from_dict(cls: type[_C], data: dict[str, Any], _prefix: str = "") -> _C:
    """Build a (nested) config dataclass from a dict, refusing unknown keys with the list of known ones and
    values of the wrong type (checked here so the dataclass's own checks never meet e.g. a string step count)."""
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys: {sorted(known)}.")
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError):  # an unresolvable annotation: leave the checks to the dataclass
        hints = {}
    kwargs = {}
    for name, value in data.items():
        default = _section_default(known[name])
        if is_dataclass(default):
            if not isinstance(value, dict | type(default)):
                raise ValueError(
                    f"{_prefix}{name}: {value!r} must be a mapping of {type(default).__name__} keys."
                )
            if isinstance(value, dict):
                value = from_dict(type(default), value, f"{_prefix}{name}.")
        else:
            try:
                value = coerce(value, hints.get(name, Any))
            except TypeError as err:
                example = default if default is not None else known[name].default
                raise ValueError(f"{_prefix}{name}: {err} (e.g. {name}: {example!r}).") from None
        kwargs[name] = value
    return cls(**kwargs)


def load_yaml(path: str | Path, cls: type[_C]) -> _C:
    """The `cls` a YAML file describes (a mapping of its fields, nested sections as mappings)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"config file {p} does not exist; pass --config with a YAML file (see configs/)."
        )
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(
            f"{p} is not valid YAML{at}: {problem}; fix that line (see configs/ for examples)."
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{p} must hold a YAML mapping of {cls.__name__} fields.")
    try:
        return from_dict(cls, data)
    except ValueError as err:
        raise ValueError(f"{p}: {err}") from None


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
        return _fit_float(value)
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
        return _fit_sequence(value, origin, args[0] if args else Any)
    return True, value  # dataclasses and other hints: the dataclass checks them


def _fit_float(value: Any) -> tuple[bool, Any]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True, float(value)
    # PyYAML reads `1e-4` (no dot) as a string; accept what float() reads.
    if isinstance(value, str):
        try:
            return True, float(value)
        except ValueError:
            return False, value
    return False, value


def _fit_sequence(value: Any, origin: type, item: Any) -> tuple[bool, Any]:
    if not isinstance(value, list | tuple):
        # One value where a list is expected (`data: book.txt`) is a list of one, as the flag's one word is;
        # a tuple has a fixed length, so it gets no such reading.
        if origin is list:
            ok, out = _fit(value, item)
            return ok, [out] if ok else value
        return False, value
    outs = []
    for v in value:
        ok, out = _fit(v, item)
        if not ok:
            return False, value
        outs.append(out)
    return True, outs if origin is list else tuple(outs)


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
