"""Fine-tuning options: LoRA+ (norms and embeddings), RoPE scaling, `lemo eval` on an adapter, apply-then-PEFT."""

import json

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file

import lemo
from lemo.cli.__main__ import main
from lemo.config import FinetuneConfig
from lemo.integrations.peft import add_lora, load_adapter
from lemo.integrations.transformers.loading import load_model, rope_scaled_config
from lemo.testing import assert_close, tiny_model
from lemo.train.loop import finetune


def test_lora_plus_trains_norms_and_embeddings_and_saves_them(tiny_model_dir, text_file, tmp_path):
    cfg = FinetuneConfig(
        model=str(tiny_model_dir),
        data=[str(text_file)],
        seq_len=128,
        steps=2,
        save_every=0,
        output_dir=str(tmp_path / "run"),
        progress=False,
        lora={"rank": 4, "train_norms": True, "train_embeddings": True},
        sparsity={"block_size": 16},
    )
    finetune(cfg)
    extra = load_file(str(tmp_path / "run" / "adapter" / "extra_trainable.safetensors"))
    assert any("embed_tokens" in k for k in extra) and any("layernorm" in k for k in extra)
    base, _ = load_model(tiny_model_dir)
    before = base.model.embed_tokens.weight.detach().clone()
    loaded = load_adapter(base, tmp_path / "run" / "adapter")
    name = next(k for k in extra if "embed_tokens" in k)
    after = dict(loaded.named_parameters())[name]
    assert torch.equal(after.detach(), extra[name]) and not torch.equal(after.detach(), before)


def test_rope_scaling_extends_the_context(tiny_model_dir):
    cfg = rope_scaled_config(tiny_model_dir, "yarn", 2.0)
    assert cfg.max_position_embeddings == 2 * 8192
    assert cfg.rope_parameters["rope_type"] == "yarn" and cfg.rope_parameters["factor"] == 2.0
    model, _ = load_model(tiny_model_dir, rope_scaling="linear", rope_factor=4.0)
    assert model.config.max_position_embeddings == 4 * 8192
    assert torch.isfinite(model(input_ids=torch.randint(0, 100, (1, 64))).logits).all()


def test_eval_command_scores_a_model_with_its_adapter(tiny_model_dir, text_file, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["finetune", "--model", str(tiny_model_dir), "--data", str(text_file), "--seq-len", "128"]
    assert main([*args, "--steps", "2", "--block-size", "16", "--output-dir", str(run), "--no-progress"]) == 0
    out = tmp_path / "ppl.json"
    eval_args = [
        "eval",
        "--model",
        str(tiny_model_dir),
        "--adapter",
        str(run / "adapter"),
        "--data",
        str(text_file),
    ]
    assert main([*eval_args, "--lengths", "64", "128", "--windows", "2", "--output", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [r["context"] for r in results] == [64, 128]
    assert all(r["ppl"] > 1 for r in results)
    assert "ppl @" in capsys.readouterr().out


def test_apply_before_peft_sees_the_adapters():
    torch.manual_seed(0)
    ids = torch.randint(0, 256, (1, 96))
    a = tiny_model("llama").train()
    lemo.apply(a, lemo.SparsityConfig(keep_ratio=0.5, block_size=16, random_fraction=0.0))
    a = get_peft_model(a, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    b = tiny_model("llama").train()
    b = get_peft_model(b, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    b.load_state_dict(a.state_dict())
    lemo.apply(b, lemo.SparsityConfig(keep_ratio=0.5, block_size=16, random_fraction=0.0))
    assert_close(
        a(input_ids=ids, labels=ids).loss, b(input_ids=ids, labels=ids).loss, name="order of apply/PEFT"
    )


def test_add_lora_refuses_unknown_targets():
    import pytest

    with pytest.raises(ValueError, match="name no module of this model"):
        add_lora(tiny_model("llama"), 4, 8, 0.0, ["qkv_proj"])
