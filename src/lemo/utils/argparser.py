"""The CLI generator: argparse flags from a config dataclass, so every command's flags are its config's fields
(and never drift from them). `lemo finetune`, `plan`, `eval`, `data`, `calibrate` (lemo.cli) and `lemo bench`
(lemo.bench.run) are all built here.

How a field becomes a flag, by its type (`--` and the field name with dashes, `seq_len` -> `--seq-len`):

    bool                    --x / --no-x
    int, float, str         one value of that type
    Literal["a", "b"]       one of the choices
    list[T]                 one or more values (nargs="+")
    tuple[T, T]             exactly that many values
    T | None                as T (None stays the default)
    a config dataclass      its own fields' flags, prefixed with the section's name (`lora` -> `--lora-rank`)

The exceptions are written on the field as `Annotated[T, Flag(...)]` (`lemo.config.flags`): other names, a
metavar, a parse function for lemo's value syntaxes (`--keep-ratio 0.5,0.4`, `--sparse-layers 10,11`), a help
text, hidden flags, mutually exclusive groups, and a section's prefix (`sparsity` and `calibration` have none:
`--keep-ratio`). Help texts are the fields' docstrings (`lemo.config.field_docs`), ending with the default.
Precedence: dataclass defaults < `--config FILE.yaml` < flags.

Why hand-written rather than a library (issue 13 asked): jsonargparse (litgpt's choice) namespaces nested fields
as `--sparsity.keep_ratio` and `--lora.rank`, which renames every flag the README, the configs and the users'
scripts spell today; HfArgumentParser does not take nested dataclasses. What this module owns is small: one
argparse argument per field, typed by its annotation.

It sits low (rank 1, beside the other utils): `lemo bench` parses its own command line in lemo.bench, which the
CLI package imports, so the generator cannot live in lemo.cli.
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, fields, is_dataclass
from typing import Any, TypeVar

from lemo.config import field_docs, from_dict, load_yaml
from lemo.config.flags import Flag, flag_of

_C = TypeVar("_C")
_SCALARS = (int, float, str)


def add_flags(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    choices: Mapping[str, Sequence[str]] | None = None,
    _dest: str = "",
    _prefix: str = "",
) -> argparse.ArgumentParser:
    """Add one flag per field of the config dataclass `cls` (nested sections flattened) to `parser`.

    `choices` gives the allowed values of fields whose type is a plain `str` because the names live above the
    config layer (`lemo bench --configs`), keyed by field name (dotted inside sections); the help lists them. A flag's value lands in `ns.<dotted field>`, and only when given (`config_from_args` fills the rest).
    """
    hints = typing.get_type_hints(cls, include_extras=True)
    docs = field_docs(cls)
    groups: dict[str, Any] = {}
    for f in fields(cls):
        hint, meta = _unwrap(hints[f.name])
        if isinstance(hint, type) and is_dataclass(hint):
            prefix = f"{f.name}-" if meta.prefix is None else meta.prefix
            add_flags(parser, hint, choices=choices, _dest=f"{_dest}{f.name}.", _prefix=_prefix + prefix)
            continue
        allowed = (choices or {}).get(_dest + f.name)
        kw = _value(hint, meta, f.name, allowed)
        text = meta.help if meta.help is not None else " ".join(docs.get(f.name, ("", ""))[1].split())
        kw["help"] = argparse.SUPPRESS if meta.hidden else _help(text, _default(f), allowed)
        if meta.group is not None and meta.group not in groups:
            groups[meta.group] = parser.add_mutually_exclusive_group()
        target = groups[meta.group] if meta.group is not None else parser
        names = ["--" + _prefix + f.name.replace("_", "-"), *meta.names]
        target.add_argument(*names, dest=_dest + f.name, default=argparse.SUPPRESS, **kw)
    return parser


def build_parser(parser: argparse.ArgumentParser, cls: type) -> argparse.ArgumentParser:
    """`parser` with `--config FILE` and one flag per field of `cls`: a lemo command's whole command line."""
    parser.add_argument(
        "--config",
        dest="_config",
        default=None,
        metavar="FILE",
        help="YAML file mirroring the config dataclass",
    )
    return add_flags(parser, cls)


def config_from_args(cls: type[_C], ns: argparse.Namespace) -> _C:
    """The config of a parsed command line: defaults, then the `--config` YAML file, then the flags given."""
    values = vars(ns).copy()
    path = values.pop("_config", None)
    values.pop("_command", None)
    base = load_yaml(path, cls).to_dict() if path else {}  # type: ignore[attr-defined]
    for dotted, value in values.items():
        node = base
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(cls, base)  # type: ignore[type-var,return-value]


def _unwrap(hint: Any) -> tuple[Any, Flag]:
    """A field's type without its `Annotated` wrapper, and its `Flag` (an empty one when it has none)."""
    if typing.get_origin(hint) is typing.Annotated:
        return hint.__origin__, flag_of(hint.__metadata__)
    return hint, Flag()


def _value(hint: Any, meta: Flag, name: str, allowed: Sequence[str] | None) -> dict[str, Any]:
    """argparse keywords for the value of a field of type `hint`: action, type, nargs, choices, metavar."""
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    kw: dict[str, Any] = {"metavar": meta.metavar or name.upper()}
    if meta.parse is not None:
        return {**kw, "type": _word(meta.parse)}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        if len(present) != 1:
            raise TypeError(f"--{name}: a flag of type {hint} needs Annotated[..., Flag(parse=...)]")
        return _value(present[0], meta, name, allowed)
    item = hint
    if origin is list or (origin is tuple and args[-1:] == (Ellipsis,)):
        kw["nargs"], item = "+", args[0]
    elif origin is tuple:
        kw["nargs"], item = len(args), args[0]
    if typing.get_origin(item) is typing.Literal:
        kw["choices"] = list(typing.get_args(item))
    elif item in _SCALARS:
        kw["type"] = item
    else:
        raise TypeError(f"--{name}: no flag for type {hint}; give the field Annotated[..., Flag(parse=...)]")
    if allowed is not None:
        kw["choices"] = list(allowed)
    return kw


def _word(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` for argparse: its ValueError's message, which names the fix, becomes the usage error."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = parse.__name__
    return convert


def _default(f: Field) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return f.default


def _help(text: str, default: Any, allowed: Sequence[str] | None) -> str:
    if allowed is not None:
        text = f"{text} Choices: {', '.join(allowed)}."
    if default is not MISSING:
        text = f"{text} (default: {default})"
    return text.strip().replace("%", "%%")
