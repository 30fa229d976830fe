"""Liger-Kernel as a baseline (`lemo bench`'s liger-* configs) and as a part (lemo on a Liger-patched model).

Liger's kernels run on the CPU only in Triton's interpreter, which must be on before Triton is first imported:
`test_liger_kernels_under_lemo` runs tests/integrations/liger_checks.py in a process of its own. The tests here
run no Liger kernel: patching, undoing, the benchmark's configs and the errors when Liger is missing.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import lemo
from lemo.bench.configs import CONFIGS
from lemo.cli.__main__ import main
from lemo.testing import tiny_model, with_lora

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_liger(monkeypatch):
    """Liger not installed: importing it fails as it would in an environment without the extra."""
    for name in [n for n in sys.modules if n == "liger_kernel" or n.startswith("liger_kernel.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "liger_kernel", None)
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", None)


@pytest.mark.extra("liger_kernel", "trl", "datasets")
def test_liger_kernels_under_lemo():
    # The caller's PYTHONPATH stays behind src: `make test-oldest` puts the oldest transformers there.
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": path}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/integrations/liger_checks.py",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "10 passed" in done.stdout


def test_every_exact_and_lemo_config_has_a_liger_twin():
    for name, (gc, segmented, sparse, mlp, extra) in CONFIGS.items():
        if name.startswith("liger-") or not (sparse or name.startswith("exact")):
            continue
        twin = CONFIGS["liger-" + name]
        assert twin[:1] + twin[2:4] == (gc, sparse, mlp)
        assert twin[4] == {**extra, "liger": True}
        # Liger's exact stack keeps Liger's fused loss; lemo on Liger keeps lemo's loss (lemo/bench/configs.py).
        assert twin[1] == (segmented and sparse)
    assert {"liger-exact", "liger-exact+offload", "liger-exact+offload+tiled"} <= CONFIGS.keys()
    assert {
        "liger-exact+offload+tiled-attn",
        "liger-lemo-random+gc",
        "liger-lemo+offload+tiled-attn",
    } <= CONFIGS.keys()


@pytest.mark.extra("liger_kernel")
def test_apply_and_remove_liger_put_the_model_back():
    from transformers.models.llama import modeling_llama

    from lemo.integrations.liger import apply_liger, fused_rope, is_liger_applied, remove_liger

    hf_rope, hf_norm = modeling_llama.apply_rotary_pos_emb, modeling_llama.LlamaRMSNorm
    model = with_lora(tiny_model("llama", layers=2))
    base = model.get_base_model()
    layer = base.model.layers[0]
    apply_liger(model)
    assert is_liger_applied(model)
    assert modeling_llama.apply_rotary_pos_emb.__module__.startswith("liger_kernel")
    assert "forward" in layer.input_layernorm.__dict__ and "forward" in layer.mlp.__dict__
    assert "forward" in base.__dict__  # the fused linear cross-entropy
    assert fused_rope(layer.self_attn) is not None
    lemo.apply(model, lemo.SparsityConfig(block_size=16))
    with pytest.raises(RuntimeError, match=r"lemo\.remove"):
        remove_liger(model)  # lemo's forward wraps Liger's: lemo comes off first
    lemo.remove(model)
    remove_liger(model)
    assert not is_liger_applied(model)
    assert modeling_llama.apply_rotary_pos_emb is hf_rope and modeling_llama.LlamaRMSNorm is hf_norm
    for module in (layer.input_layernorm, layer.post_attention_layernorm, layer.mlp, base.model.norm):
        assert not {"forward", "_get_name", "extra_repr", "casting_mode"} & module.__dict__.keys()
    assert "forward" not in base.__dict__
    assert fused_rope(layer.self_attn) is None
    ids = torch.randint(0, 256, (1, 32))
    fresh = with_lora(tiny_model("llama", layers=2))
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(input_ids=ids).logits, fresh(input_ids=ids).logits)  # HF's own modules


@pytest.mark.extra("liger_kernel")
def test_apply_liger_refuses_an_unsupported_architecture():
    from lemo.integrations.liger import apply_liger

    model = tiny_model("llama")
    model.config.model_type = "gpt2"
    with pytest.raises(ValueError, match="without --liger"):
        apply_liger(model)


def test_missing_liger_names_the_extra(no_liger):
    from lemo.integrations.liger import LigerMissing, apply_liger

    with pytest.raises(ImportError, match=r"pip install 'lemo\[liger\]'") as info:
        apply_liger(tiny_model("llama"))
    assert isinstance(info.value, LigerMissing) and isinstance(info.value, RuntimeError)


def test_finetune_liger_without_liger_is_a_one_line_error(no_liger, tmp_path, capsys):
    code = main(["finetune", "--liger", "--steps", "1", "--output-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "lemo finetune: error:" in err and "pip install 'lemo[liger]'" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_bench_liger_config_without_liger_is_a_one_line_error(no_liger, tmp_path, capsys):
    argv = ["bench", "--shape", "tiny", "--lengths", "128", "--configs", "liger-exact"]
    assert main([*argv, "--steps", "1", "--warmup", "0", "--out", str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lemo bench: error:") and "pip install 'lemo[liger]'" in err
    assert "Traceback" not in err
