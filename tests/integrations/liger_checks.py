"""lemo on a Liger-patched model, with Liger's own Triton kernels running (in Triton's interpreter, on the CPU).

Not collected by a plain `pytest` run (the name has no test_ prefix): the interpreter must be on before Triton is
first imported, so tests/integrations/test_liger.py runs this file in a process of its own with TRITON_INTERPRET=1
(see tests/liger_cpu.py). The interpreter runs each kernel program in Python: shapes stay a few dozen rows.
"""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import liger_cpu

liger_cpu.install()

import liger_kernel.transformers.rms_norm as liger_rms  # noqa: E402
import liger_kernel.transformers.rope as liger_rope  # noqa: E402
import liger_kernel.transformers.swiglu as liger_swiglu  # noqa: E402

import lemo  # noqa: E402
from lemo.integrations.liger import apply_liger, fused_rope, is_liger_applied, remove_liger  # noqa: E402
from lemo.integrations.transformers.archs import LLAMA, layer_parts  # noqa: E402
from lemo.ops import apply_rope  # noqa: E402
from lemo.testing import tiny_model, with_lora  # noqa: E402

T = 64  # four blocks of 16: one sink, one local, two to choose from
BLOCKS = {"block_size": 16, "keep_ratio": 0.5}


@pytest.fixture
def calls(monkeypatch):
    """Rows each Liger kernel was called on: {"rms_norm": [rows, ...], "swiglu": [...], "rope": [...]}."""
    seen: dict[str, list[int]] = {"rms_norm": [], "swiglu": [], "rope": []}

    def spy(name, fn, rows):
        def wrapper(*args, **kwargs):
            seen[name].append(rows(args))
            return fn(*args, **kwargs)

        return wrapper

    norm_fn = liger_rms.LigerRMSNormFunction
    silu_fn = liger_swiglu.LigerSiLUMulFunction
    monkeypatch.setattr(
        norm_fn, "apply", staticmethod(spy("rms_norm", norm_fn.apply, lambda a: a[0].shape[-2]))
    )
    monkeypatch.setattr(
        silu_fn, "apply", staticmethod(spy("swiglu", silu_fn.apply, lambda a: a[0].shape[-2]))
    )
    monkeypatch.setattr(liger_rope, "dispatch", spy("rope", liger_rope.dispatch, lambda a: a[1].shape[-2]))
    return seen


def _pair(arch="llama", **liger):
    """Two copies of one LoRA model (same weights); the first Liger-patched."""
    a, b = (with_lora(tiny_model(arch, layers=2)).train() for _ in range(2))
    b.load_state_dict(a.state_dict())
    apply_liger(a, **liger)
    return a, b


def _loss_and_grads(model, ids, seed=1):
    torch.manual_seed(seed)  # the same random blocks in both models
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


def test_fused_rope_matches_lemos_reference():
    model = tiny_model("llama", layers=1)
    apply_liger(model)
    attn = model.model.layers[0].self_attn
    rope = fused_rope(attn)
    assert rope is not None  # HF's attention of this module now calls Liger's: lemo's layers do too
    positions = torch.tensor([[0, 1, 2, 9, 17, 40, 41, 63]])  # kept rows at their original positions
    cos, sin = model.model.rotary_emb(torch.zeros(1, 8, 64), positions)  # [1, 8, D] each
    q = torch.randn(8, 4, 16, requires_grad=True)  # [N, H, D]
    k = torch.randn(8, 2, 16, requires_grad=True)  # [N, H_kv, D]
    q2, k2 = (t.detach().clone().requires_grad_() for t in (q, k))
    fq, fk = rope(q.clone(), k.clone(), cos[0], sin[0])  # Liger's kernel rotates its inputs in place
    rq, rk = apply_rope(q2, cos[0], sin[0]), apply_rope(k2, cos[0], sin[0])
    torch.testing.assert_close(fq, rq)
    torch.testing.assert_close(fk, rk)
    weight_q, weight_k = torch.randn_like(fq), torch.randn_like(fk)
    ((fq * weight_q).sum() + (fk * weight_k).sum()).backward()
    ((rq * weight_q).sum() + (rk * weight_k).sum()).backward()
    torch.testing.assert_close(q.grad, q2.grad)
    torch.testing.assert_close(k.grad, k2.grad)
    remove_liger(model)
    assert fused_rope(attn) is None and not is_liger_applied(model)


def test_layer_parts_read_liger_modules():
    model = tiny_model("llama", layers=1)
    apply_liger(model)
    layer = model.model.layers[0]
    parts = layer_parts(layer, LLAMA, 0, model.config)
    assert parts.input_norm.forward.__func__ is liger_rms.LigerRMSNorm.forward
    assert parts.post_norm.forward.__func__ is liger_rms.LigerRMSNorm.forward
    assert parts.mlp.forward.__func__ is liger_swiglu.LigerSwiGLUMLP.forward
    assert parts.attn.rope is not None


@pytest.mark.parametrize(
    "extra",
    [{}, {"tile_tokens": 16, "tile_attention": True}],
    ids=["default", "tiled-attn"],
)
def test_lemo_on_liger_runs_liger_kernels_and_matches_lemo_alone(extra, calls):
    """lemo's kept-row (and tiled) paths call Liger's norm, SwiGLU and RoPE, and train what lemo alone trains."""
    cfg = lemo.SparsityConfig(**BLOCKS, **extra)
    liger, plain = _pair()
    lemo.apply(liger, cfg)
    lemo.apply(plain, cfg)
    ids = torch.randint(0, 256, (1, T))
    loss, grads = _loss_and_grads(liger, ids)
    assert calls["rms_norm"] and calls["swiglu"] and calls["rope"]
    kept = lemo.stats(liger)[0]["kept_fraction"] * T
    assert 0 < kept < T
    if extra:  # every layer tiled, dense ones too: Liger's kernels run a tile of rows at a time
        # (the trimmed last layer runs only the scored rows, which need not fill whole tiles)
        assert max(calls["swiglu"]) == 16 and set(calls["rope"]) == {16} and 16 in calls["rms_norm"]
    else:  # the sparse layer's kept rows, through Liger's kernels
        assert kept in calls["rms_norm"] and kept in calls["swiglu"] and kept in calls["rope"]
    ref_loss, ref_grads = _loss_and_grads(plain, ids)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=1e-5)
    assert grads.keys() == ref_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-3, atol=1e-5, msg=name)
    lemo.remove(liger)
    remove_liger(liger)


def test_liger_exact_loss_is_the_models_loss():
    """Liger's fused linear cross-entropy (liger-exact) gives HF's loss; lemo's segmented loss replaces it while
    lemo is applied, and `lemo.remove` puts Liger's back."""
    liger, plain = _pair()
    ids = torch.randint(0, 256, (1, T))
    fused = liger(input_ids=ids, labels=ids)
    assert fused.logits is None  # the fused loss never builds the logits
    torch.testing.assert_close(fused.loss, plain(input_ids=ids, labels=ids).loss, rtol=1e-4, atol=1e-5)
    liger_forward = liger.get_base_model().__dict__["forward"]
    lemo.apply(liger, lemo.SparsityConfig(**BLOCKS))
    assert liger.get_base_model().__dict__["forward"] is not liger_forward
    lemo.remove(liger)
    assert liger.get_base_model().__dict__["forward"] is liger_forward


def test_trl_use_liger_kernel_with_lemo_callback(tmp_path, tiny_model_dir, calls):
    """TRL's SFTTrainer with use_liger_kernel=True (Liger's layer kernels, TRL's fused LM head) and lemo applied
    first: LemoCallback puts lemo's forward on top, and elimination trains through Liger's kernels."""
    import datasets
    import trl
    from transformers import AutoTokenizer

    from lemo.integrations import LemoCallback

    model = with_lora(tiny_model("llama", layers=2)).train()
    lemo.apply(model, lemo.SparsityConfig(**BLOCKS))
    rows = [{"input_ids": torch.randint(0, 256, (T,)).tolist()} for _ in range(2)]
    args = trl.SFTConfig(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=1,
        learning_rate=1e-2,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        use_liger_kernel=True,
        max_length=T,
    )
    trainer = trl.SFTTrainer(
        model=model,
        args=args,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        callbacks=[LemoCallback()],
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    trainer.train()
    layer = model.get_base_model().model.layers[0]
    assert layer.input_layernorm.forward.__func__ is liger_rms.LigerRMSNorm.forward  # the Trainer patched it
    kept = lemo.stats(model)[0]["kept_fraction"] * T
    assert 0 < kept < T and kept in calls["rms_norm"] and calls["swiglu"] and calls["rope"]
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert [h["lemo/kept_fraction"] for h in history if "lemo/kept_fraction" in h]
    after = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    assert any(not torch.equal(before[n], after[n]) for n in before)


def test_finetune_liger_trains_through_liger_kernels(tiny_model_dir, text_file, tmp_path, calls):
    """`lemo finetune --liger`: the model is Liger-patched before lemo, and elimination trains through it."""
    from lemo.testing import tiny_finetune_config
    from lemo.train.loop import finetune

    cfg = tiny_finetune_config(tiny_model_dir, text_file, tmp_path / "run", steps=1, save_every=0, liger=True)
    result = finetune(cfg)
    assert len(result.losses) == 1 and torch.isfinite(torch.tensor(result.losses)).all()
    assert calls["rms_norm"] and calls["swiglu"]
    assert any(0 < rows < cfg.seq_len for rows in calls["rope"])  # the sparse layer's kept rows, Liger's RoPE


@pytest.mark.parametrize("arch", ["mistral", "qwen2", "qwen3"])
def test_lemo_on_liger_matches_lemo_alone_on_other_architectures(arch, calls):
    """Liger's Mistral/Qwen2/Qwen3 patches (Qwen3's per-head q/k norms too) under lemo's sparse layer."""
    cfg = lemo.SparsityConfig(**BLOCKS)
    liger, plain = _pair(arch)
    lemo.apply(liger, cfg)
    lemo.apply(plain, cfg)
    ids = torch.randint(0, 256, (1, T))
    loss, grads = _loss_and_grads(liger, ids)
    kept = lemo.stats(liger)[0]["kept_fraction"] * T
    assert 0 < kept < T and kept in calls["swiglu"] and kept in calls["rope"]
    ref_loss, ref_grads = _loss_and_grads(plain, ids)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=1e-5)
    for name in ref_grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-3, atol=1e-5, msg=name)
    lemo.remove(liger)
    remove_liger(liger)
