"""Shared fixtures of the capability tests: the real SmolLM2 tokenizer and Austen filler, and the suite runner."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lemo.eval.filler import Filler


@pytest.fixture(scope="session")
def tok(smollm2):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2, local_files_only=True)


@pytest.fixture(scope="session")
def held_text(austen_dir) -> str:
    """About 10K tokens of Persuasion (the held-out novel): the eval filler."""
    return (austen_dir / "persuasion.txt").read_text(encoding="utf-8")[:40_000]


@pytest.fixture(scope="session")
def filler(held_text, tok) -> Filler:
    return Filler.from_texts(held_text, tok)


QUALITY = Path(__file__).resolve().parents[2] / "benchmarks" / "quality"


@pytest.fixture(scope="module")
def suite_mod():
    """benchmarks/quality/suite.py as a module (it imports its neighbours, so their folder goes on the path)."""
    sys.path.insert(0, str(QUALITY))
    try:
        import suite

        yield suite
    finally:
        sys.path.remove(str(QUALITY))


# Text only the held-out phrasing uses (statement or question), per family (lemo/eval/suite_phrasings.json).
HELD_OUT_MARK = {
    "multikey": "the badge of",
    "multivalue": "tracking number",
    "vartrack": "Assign ",
    "kv": "<entries>",
    "recall": "immediately succeed",
    "count": "planted a tree",
    "count_max": "laps on one day",  # not a family: the table of count's "max" form (SuiteConfig.count_form)
    "count_last": "wore the number",  # not a family: the table of count's "last" form
}


@pytest.fixture(scope="session")
def held_out_mark() -> dict[str, str]:
    """Per family, text that only its held-out phrasing uses: none of it may reach a training row."""
    return HELD_OUT_MARK


def load_script(path):
    """A benchmark script as a module, its folder on sys.path while it is in use (its helpers sit beside it):
    yields the module; use it in a fixture."""
    import importlib.util
    import sys

    sys.path.insert(0, str(path.parent))
    try:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        before = sys.modules.get(spec.name)
        sys.modules[spec.name] = module  # a dataclass in the script looks its module up there
        spec.loader.exec_module(module)
        yield module
    finally:
        if sys.modules.get(path.stem) is module:
            sys.modules.pop(path.stem)
            if before is not None:
                sys.modules[path.stem] = before
        sys.path.remove(str(path.parent))


def write_dicts(path: Path, rows: list[dict]) -> Path:
    """A CSV of dict rows at `path`, its header every key in first-seen order (a row lacking one leaves it empty)."""
    import csv

    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), restval="")
        w.writeheader()
        w.writerows(rows)
    return path


def write_rows(path: Path, header: list[str], rows: list) -> Path:
    """A CSV of `header` and `rows` at `path` (the shape of the runner's raw or summary CSVs): the plot tests' input."""
    import csv

    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def suite_digests(preset: str, train_text: str, held_text: str, tok) -> tuple[str, str]:
    """sha256 (first 16 hex digits) of `preset`'s training rows (2 of 4K, seed 0) and eval samples (one per
    family at 2K): pinned in a test before a new knob lands, so the knob, off, provably leaves the preset's rows."""
    import dataclasses
    import hashlib
    import json

    from lemo.config import SuiteConfig
    from lemo.eval.suite_rows import eval_samples, training_rows

    def digest(obj) -> str:
        return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]

    cfg = SuiteConfig.from_preset(preset)
    rows = training_rows([train_text], tok, 4096, 2, seed=0, cfg=cfg)
    samples = eval_samples(held_text, tok, [2048], 1, cfg=cfg)
    return digest(rows), digest([dataclasses.asdict(s) for s in samples])


def chosen_as_preset(preset: str, over: str) -> tuple[dict, dict]:
    """(the knobs `sizing choose` wrote for `preset` over preset `over`, as a config; `preset` itself), both as
    dicts: a preset must be what its sizing run chose (benchmarks/results/suite_<preset>_sizing_chosen.json),
    which its suite run passed as JSON before the preset existed."""
    import dataclasses
    import json

    from lemo.config import SuiteConfig

    path = Path(__file__).resolve().parents[2] / f"benchmarks/results/suite_{preset}_sizing_chosen.json"
    chosen = json.loads(path.read_text())
    assert chosen.pop("preset") == over
    named = dataclasses.asdict(SuiteConfig.from_preset(preset))
    return dataclasses.asdict(SuiteConfig.from_preset(over, **chosen)), {**named, "preset": over}


@pytest.fixture(scope="session")
def train_text(austen_dir) -> str:
    """About 30K tokens of Pride and Prejudice: the training filler of the pinned digests."""
    return (austen_dir / "prideprejudice.txt").read_text(encoding="utf-8")[:120_000]
