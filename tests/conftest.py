import os
from pathlib import Path

import pytest
import torch

torch.manual_seed(0)
# Two cores in CI: keep torch from oversubscribing them.
torch.set_num_threads(min(2, os.cpu_count() or 1))

REPO = Path(__file__).resolve().parents[1]
AUSTEN_DIR = REPO.parent / "shared" / "data" / "austen"


@pytest.fixture(scope="session")
def austen_dir() -> Path:
    """The extracted Austen novels beside the repo when present (tests may use them), else the fetched copy."""
    if AUSTEN_DIR.is_dir():
        return AUSTEN_DIR
    from lemo.assets import austen_texts

    corpus = austen_texts()
    out = Path(os.environ.get("LEMO_CACHE", Path.home() / ".cache" / "lemo")) / "austen"
    assert corpus.source.startswith("debian"), f"no Austen text available (source {corpus.source})"
    return out
