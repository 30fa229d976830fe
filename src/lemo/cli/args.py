"""Generate an argparse parser from a config dataclass, so the CLI is the dataclass (and never drifts from it).

Precedence: dataclass defaults < `--config FILE.yaml` < flags. Nested dataclasses become flat flags: `lora`
fields get a `--lora-` prefix, `sparsity` fields none (`--keep-ratio`, `--scorer`). Help texts are the
attribute docstrings of the dataclass fields.

Why hand-written rather than a library (issue 13 asked): jsonargparse (litgpt's choice) namespaces nested
fields as `--sparsity.keep_ratio` and `--lora.rank`, which renames every flag the README, the configs and the
users' scripts spell today; its help texts from attribute docstrings also need `docstring-parser` and the source
at run time, which is what `_docstrings` does here in 25 lines. HfArgumentParser does not take nested dataclasses.
What this module owns is small: one argparse argument per dataclass field, typed by its annotation, plus the two
value syntaxes lemo adds (per-layer lists like `0.5,0.4` and `auto|all|none|1,2,3` layer sets).
"""

from __future__ import annotations

import argparse
import ast
import itertools
import sys
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

PREFIX = {"lora": "lora-", "sparsity": "", "calibration": ""}


def _docstrings(cls: type) -> dict[str, str]:
    """Attribute docstrings (a string literal right after a field) read from the module file."""
    path = getattr(sys.modules[cls.__module__], "__file__", None)
    if not path:
        return {}
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
            body = node.body
            for a, b in itertools.pairwise(body):
                if (
                    (
                        isinstance(a, ast.AnnAssign)
                        and isinstance(a.target, ast.Name)
                        and isinstance(b, ast.Expr)
                    )
                    and isinstance(b.value, ast.Constant)
                    and isinstance(b.value.value, str)
                ):
                    out[a.target.id] = " ".join(b.value.value.split())
    return out


def _number_or_list(text: str) -> float | list[float]:
    """ "0.4" -> 0.4; "0.5,0.4,0.3" -> [0.5, 0.4, 0.3] (per-layer values)."""
    parts = [p for p in text.split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number or a comma-separated list of numbers"
        ) from None
    return values[0] if len(values) == 1 else values


def _layers(text: str) -> str | list[int]:
    if text in ("auto", "all", "none"):
        return text
    try:
        return [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use auto, all, none or comma-separated layer indices"
        ) from None


def _add(parser: argparse.ArgumentParser, cls: type, dest_prefix: str, flag_prefix: str) -> None:
    hints = typing.get_type_hints(cls)
    docs = _docstrings(cls)
    for f in fields(cls):
        hint = hints[f.name]
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if is_dataclass(default):
            _add(parser, type(default), f"{dest_prefix}{f.name}.", PREFIX.get(f.name, f"{f.name}-"))
            continue
        flag = "--" + flag_prefix + f.name.replace("_", "-")
        kw: dict[str, Any] = {"dest": dest_prefix + f.name, "default": argparse.SUPPRESS}
        help_text = docs.get(f.name, "")
        args = typing.get_args(hint)
        origin = typing.get_origin(hint)
        if hint is not bool:
            kw["metavar"] = f.name.upper()
        if hint is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif f.name in ("keep_ratio", "threshold"):
            kw["type"] = _number_or_list
        elif f.name == "sparse_layers":
            kw["type"] = _layers
        elif origin is tuple:
            kw["nargs"] = len(args)
            kw["type"] = float
        elif origin is list:
            kw["nargs"] = "+"
            kw["type"] = args[0] if args and args[0] in (int, float) else str
        elif origin is typing.Literal:
            kw["choices"] = list(args)
        else:
            base = (
                [a for a in args if a is not type(None)]
                if origin in (typing.Union, types.UnionType)
                else [hint]
            )
            kw["type"] = base[0] if base and base[0] in (int, float, str) else str
        kw["help"] = f"{help_text} (default: {default})".strip().replace("%", "%%")
        parser.add_argument(flag, **kw)


def build_parser(parser: argparse.ArgumentParser, cls: type) -> argparse.ArgumentParser:
    parser.add_argument(
        "--config",
        dest="_config",
        default=None,
        metavar="FILE",
        help="YAML file mirroring the config dataclass",
    )
    _add(parser, cls, "", "")
    return parser


def config_from_args(cls: type, ns: argparse.Namespace, load_yaml) -> Any:
    """Merge defaults, the YAML file and the flags into one config dataclass."""
    from dataclasses import asdict

    values = vars(ns).copy()
    path = values.pop("_config", None)
    values.pop("_command", None)
    base = asdict(load_yaml(path, cls)) if path else {}
    for dotted, value in values.items():
        node = base
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    from lemo.config import from_dict

    return from_dict(cls, base)
