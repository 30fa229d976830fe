"""lemo.predictor sits below the integrations (docs/design.md section 2): it never imports a model library."""

import ast
from pathlib import Path

import lemo.predictor

ALLOWED_LEMO = (
    "lemo.ops",
    "lemo.config",
    "lemo._version",
    "lemo.utils",
    "lemo.sparsity.parts",
    "lemo.sparsity.scoring",  # the one oracle and scorer protocol
    "lemo.sparsity.budget",  # DenseModel, the protocol the budget search and calibration share
    "lemo.predictor",
)
FORBIDDEN = ("transformers", "peft", "accelerate", "lemo.integrations", "lemo.train", "lemo.api", "lemo.cli")


def test_predictor_imports_only_lower_layers():
    root = Path(lemo.predictor.__file__).parent
    for path in sorted(root.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"
                if name.startswith("lemo"):
                    assert name.startswith(ALLOWED_LEMO), f"{path.name} imports {name}"


def test_lemo_predictor_exports_only_its_own_names():
    # No re-exports of names that live elsewhere (the budget search, the oracle, the configs): one home each.
    foreign = [
        name
        for name in lemo.predictor.__all__
        if not getattr(lemo.predictor, name).__module__.startswith("lemo.predictor.")
    ]
    assert not foreign
