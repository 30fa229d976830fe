import importlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from lemo.testing import tiny_model

torch.manual_seed(0)
# Two cores in CI: keep torch from oversubscribing them.
torch.set_num_threads(min(2, os.cpu_count() or 1))

REQUIRE_EXTRAS = "LEMO_REQUIRE_EXTRAS"  # `make test` sets it: CI installs every extra, so none may be skipped


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "extra(*modules): needs optional packages (a pyproject extra); skipped where one is missing, "
        f"failed instead under {REQUIRE_EXTRAS}=1",
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Skip only the tests that need a missing extra (a GPU box without trl still runs `pytest -m gpu`), but where
    # the extras are meant to be installed (CI), a missing one is a failure, never a silent skip.
    for mark in item.iter_markers("extra"):
        missing = []
        for module in mark.args:
            try:
                importlib.import_module(module)
            except ImportError:
                missing.append(module)
        if not missing:
            continue
        if os.environ.get(REQUIRE_EXTRAS) == "1":
            pytest.fail(
                f"{', '.join(missing)} not installed, and {REQUIRE_EXTRAS}=1 requires every extra: "
                "pip install -e '.[dev,trl]' (make install does)",
                pytrace=False,
            )
        pytest.skip(f"needs {', '.join(missing)} (pip install -e '.[trl]')")


@pytest.fixture(scope="session")
def austen_dir() -> Path:
    """The folder holding the Austen novels, found as lemo.assets finds it: ``$LEMO_AUSTEN_DIR`` or the cache
    `python -m lemo.assets.install` fills (make test runs it)."""
    from lemo.assets import austen_texts
    from lemo.assets.austen import austen_cache

    corpus = austen_texts()
    if corpus.source.startswith("dir:"):
        return Path(corpus.source.removeprefix("dir:"))
    assert corpus.source.startswith("debian"), f"no Austen text available (source {corpus.source})"
    return austen_cache()


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    """The embedded SmolLM2 converted once into a test cache (the real model, real tokenizer)."""
    from lemo.assets import smollm2_dir

    return smollm2_dir()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2) -> Path:
    """A random-init 2-layer Llama with SmolLM2's real tokenizer, saved as an HF directory."""
    out = tmp_path_factory.mktemp("tiny-llama")
    model = tiny_model("llama", layers=2, hidden=64, heads=4, kv_heads=2, vocab=49152)
    model.save_pretrained(out)
    for f in smollm2.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="session")
def text_file(tmp_path_factory, austen_dir) -> Path:
    """About 15K tokens of Emma: enough rows for short runs, quick to tokenize."""
    path = tmp_path_factory.mktemp("data") / "emma.txt"
    path.write_text((austen_dir / "emma.txt").read_text()[:60_000])
    return path
