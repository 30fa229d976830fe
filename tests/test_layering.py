"""Dependencies point one way (docs/design.md section 2): config -> ops/memory/utils -> predictor/sparsity ->
integrations -> train/eval/plan -> api/bench -> cli."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "lemo"
ORDER = {
    "config": 0,  # every config class: imports nothing else of lemo, so any layer may import it
    "ops": 1,
    "memory": 1,
    "_version": 1,
    "utils": 1,
    "predictor": 2,
    "sparsity": 2,
    "integrations": 3,
    "assets": 4,
    "train": 4,
    "eval": 4,
    "plan": 4,
    "api": 5,
    "bench": 5,
    "testing": 6,
    "cli": 6,
    "__init__": 6,
    "__main__": 6,
}
THIRD_PARTY_BANNED_BELOW_INTEGRATIONS = ("transformers", "peft", "accelerate")


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC).parts
    return rel[0].removesuffix(".py")


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_every_module_has_a_known_layer():
    for path in SRC.rglob("*.py"):
        assert _layer(path) in ORDER, (
            f"{path} is in no layer of the architecture; add it to ORDER deliberately"
        )


def test_imports_point_one_way():
    bad = []
    for path in SRC.rglob("*.py"):
        mine = ORDER[_layer(path)]
        for mod in _imports(path):
            parts = mod.split(".")
            if parts[0] == "lemo":
                # A bare `import lemo` / `from lemo import x` runs the top-level package, which imports everything.
                theirs = ORDER.get(parts[1], ORDER["__init__"]) if len(parts) > 1 else ORDER["__init__"]
                if theirs > mine:
                    bad.append(f"{path.relative_to(SRC)} imports {mod}")
            if parts[0] in THIRD_PARTY_BANNED_BELOW_INTEGRATIONS and mine < ORDER["integrations"]:
                bad.append(f"{path.relative_to(SRC)} imports {mod} below the integrations layer")
    assert not bad, "\n".join(bad)


def test_config_imports_only_itself_and_no_torch():
    # `import lemo` imports lemo.config, and the CLI must catch a Ctrl-C while torch imports: no torch here. Nor
    # argparse: a field's command-line exceptions are plain data (`Flag`), read by lemo.utils.argparser.
    bad = [
        f"{path.relative_to(SRC)} imports {mod}"
        for path in (SRC / "config").rglob("*.py")
        for mod in _imports(path)
        if (mod.startswith("lemo") and not mod.startswith("lemo.config"))
        or mod.split(".")[0] in ("torch", "argparse")
    ]
    assert not bad, "\n".join(bad)


def _package_imports() -> dict[str, set[str]]:
    """Top-level package (or module) of lemo -> the other top-level ones it imports, lazy imports included."""
    graph: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        mine = _layer(path)
        for mod in _imports(path):
            parts = mod.split(".")
            if parts[0] == "lemo":
                theirs = parts[1] if len(parts) > 1 else "__init__"
                if theirs != mine:
                    graph.setdefault(mine, set()).add(theirs)
    return graph


def _find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (its packages, the first repeated at the end), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            circle = visit(nxt, [*path, node])
            if circle:
                return circle
        done.add(node)
        return None

    for start in sorted(graph):
        circle = visit(start, [])
        if circle:
            return circle
    return None


def test_find_circle_sees_a_circle():
    assert _find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_circle({"a": {"b"}, "b": {"c"}}) is None


def test_no_import_circle_between_packages():
    # Layers of equal rank (train, eval) may import each other as far as the test above goes; this one does not
    # let two packages depend on each other, directly or through others.
    circle = _find_circle(_package_imports())
    assert circle is None, "import circle between lemo's packages: " + " -> ".join(circle or [])
