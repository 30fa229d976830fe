"""Field docs of the config classes: the string literal right under a field, read from the class's source.

Python keeps attribute docstrings nowhere, so they are parsed from the module file; `document_fields` appends
them to the class docstring, so `help(FinetuneConfig)` explains every field as `--help` does.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import sys


@functools.cache
def _module_tree(path: str) -> ast.Module | None:
    # No source shipped (a zipped or compiled install) means no field docs, not an import error.
    try:
        with open(path, encoding="utf-8") as f:
            return ast.parse(f.read())
    except (OSError, SyntaxError, ValueError):
        return None


def _own_field_docs(cls: type) -> dict[str, tuple[str, str]]:
    """{field: (annotation and default, docstring)} of the fields written in `cls`'s own body."""
    tree = _module_tree(getattr(sys.modules.get(cls.__module__), "__file__", None) or "")
    nodes = ast.walk(tree) if tree else ()
    body = next((n.body for n in nodes if isinstance(n, ast.ClassDef) and n.name == cls.__name__), [])
    out = {}
    for a, b in itertools.pairwise(body):
        if not (isinstance(a, ast.AnnAssign) and isinstance(a.target, ast.Name)):
            continue
        if isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str):
            default = "" if a.value is None or isinstance(a.value, ast.Call) else f" = {ast.unparse(a.value)}"
            kind = ast.unparse(_type_of(a.annotation)) + default
            out[a.target.id] = (kind, inspect.cleandoc(b.value.value))
    return out


def _type_of(annotation: ast.expr) -> ast.expr:
    """`T` of `Annotated[T, Flag(...)]` (command-line metadata, lemo.config.flags); other annotations as written."""
    a = annotation
    if isinstance(a, ast.Subscript) and isinstance(a.value, ast.Name) and a.value.id == "Annotated":
        return a.slice.elts[0] if isinstance(a.slice, ast.Tuple) else a.slice
    return a


def field_docs(cls: type) -> dict[str, tuple[str, str]]:
    """The attribute docstrings of a config class (a string literal right under a field), its bases' first:
    {field: (annotation and default, docstring)}."""
    out: dict[str, tuple[str, str]] = {}
    for klass in reversed(cls.__mro__[:-1]):
        out.update(_own_field_docs(klass))
    return out


def document_fields(cls: type) -> type:
    """Append a "Fields:" section made of the attribute docstrings to `cls.__doc__`, so `help(cls)` explains
    every field (`DictConfig` subclasses get it automatically; decorate other config dataclasses)."""
    docs = field_docs(cls)
    if docs:
        lines = [inspect.cleandoc(cls.__dict__.get("__doc__") or cls.__name__), "", "Fields:"]
        for name, (kind, text) in docs.items():
            lines += [f"    {name}: {kind}", *(f"        {line}".rstrip() for line in text.splitlines())]
        cls.__doc__ = "\n".join(lines)
    return cls
