"""The planner's memory formulas against peaks measured on a CPU (tiny Llama + PEFT LoRA, one full step).

The peak is measured by a dispatch mode that sees every tensor an op creates and counts its storage until
Python frees it: allocator-exact for CPU tensors, and independent of the planner. Weights and AdamW's states
exist before the measured step, so the comparison is of everything the step itself allocates: the plan's peak
minus its weights and adapter states, plus the adapter gradients that the step creates.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils._python_dispatch import _disable_current_modes

import lemo
from lemo.bench.storages import LiveStorages
from lemo.plan import PlanConfig, predict, resolve_shape
from lemo.plan.memory import lora_params
from lemo.testing import tiny_model

TOLERANCE = 0.10  # stated target: within 10% of the measured step peak
SHAPE = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=512,
    max_position_embeddings=8192,
    model_type="llama",
    tie_word_embeddings=False,
)
T = 1024


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    (path / "config.json").write_text(json.dumps(SHAPE))
    return path


def _build(dtype: torch.dtype, shape: dict = SHAPE):
    from peft import LoraConfig, get_peft_model

    model = tiny_model(
        "llama",
        layers=shape["num_hidden_layers"],
        hidden=shape["hidden_size"],
        intermediate=shape["intermediate_size"],
        heads=shape["num_attention_heads"],
        kv_heads=shape["num_key_value_heads"],
        vocab=shape["vocab_size"],
        max_positions=shape["max_position_embeddings"],
        tie_word_embeddings=shape["tie_word_embeddings"],
        use_cache=False,
        dtype=dtype,
    )
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    return get_peft_model(model, lora).train()


def measured_step_peak(
    dtype: torch.dtype, gc: bool, sparsity: lemo.SparsityConfig | None, shape: dict = SHAPE, seq_len: int = T
) -> int:
    model = _build(dtype, shape)
    if gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    if sparsity is not None:
        lemo.apply(model, sparsity)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    ids = torch.randint(0, shape["vocab_size"], (1, seq_len))

    def step() -> None:
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # AdamW's moments exist from here on, as in the benchmark's timed steps
    states = [v for s in opt.state.values() for v in s.values() if torch.is_tensor(v)]
    with LiveStorages([*model.parameters(), *model.buffers(), *states]) as mode:
        step()
    return mode.peak


@pytest.fixture(autouse=True)
def _causal_bias_outside_the_mode(monkeypatch):
    """The reference kept-queries attention (backward elimination) builds a CausalBias, a tensor subclass without
    storage of its own, which cannot be made while a dispatch mode runs: make it outside the counting mode."""
    import lemo.ops.sparse_attention.reference as reference

    make = reference.causal_lower_right

    def outside(*args):
        with _disable_current_modes():
            return make(*args)

    monkeypatch.setattr(reference, "causal_lower_right", outside)


BACKWARD_ALL = {"elimination": "backward", "sparse_layers": "all"}
CASES = {
    # name: (gradient checkpointing, lemo SparsityConfig or None for plain PEFT LoRA)
    "lora": (False, None),
    "lora+gc": (True, None),
    "exact": (True, {"sparse_layers": "none"}),
    "lemo": (False, {}),
    "lemo+gc": (True, {}),
    "lemo+gc keep 0.3": (True, {"keep_ratio": 0.3}),
    "lemo+gc offload": (True, {"offload": "cpu"}),
    "lemo+gc tiled": (True, {"tile_tokens": 256}),
    "lemo+gc tiled attention": (True, {"tile_tokens": 256, "tile_attention": True}),
    "exact offload tiled": (True, {"sparse_layers": "none", "offload": "cpu", "tile_tokens": 256}),
    # backward elimination: the last (dense) layer's backward sets the peak with the default layers; with every
    # layer sparse, a sparse layer's recompute does (K/V of every row, the kept rows' q and MLP).
    "backward": (True, {"elimination": "backward"}),
    "backward all layers": (True, BACKWARD_ALL),
    "backward all keep 0.3 no gc": (False, {**BACKWARD_ALL, "keep_ratio": 0.3}),
    "backward all tiled": (True, {**BACKWARD_ALL, "tile_tokens": 256}),
    "backward all tiled attention offload": (
        True,
        {**BACKWARD_ALL, "tile_tokens": 256, "tile_attention": True, "offload": "cpu"},
    ),
}


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("case", list(CASES))
def test_plan_matches_measured_cpu_peak(model_dir, case, dtype):
    gc, sparsity = CASES[case]
    sp = lemo.SparsityConfig(**sparsity) if sparsity is not None else None
    measured = measured_step_peak(torch.bfloat16 if dtype == "bf16" else torch.float32, gc, sp)
    cfg = PlanConfig(
        model=str(model_dir),
        seq_len=T,
        sparse=sp is not None,
        sparsity=sp or lemo.SparsityConfig(),
        gradient_checkpointing=gc,
        dtype=dtype,
        device="cpu",
        host_gib=1e3,
    )
    plan = predict(cfg, advise=False)
    shape = resolve_shape(str(model_dir), None)
    # On a CPU the offload pool is ordinary memory: the step's peak holds both the "GPU" part and the pool.
    predicted = (plan.gpu_peak_gib + plan.host_gib - plan.breakdown_gib["weights"]) * 2**30
    predicted -= 12 * lora_params(
        shape, cfg
    )  # adapter weights and moments predate the step; its grads do not
    err = (predicted - measured) / measured
    print(
        f"\n{case:24} {dtype}  planned {predicted / 2**20:6.2f} MiB  measured {measured / 2**20:6.2f} MiB  {err:+.1%}"
    )
    assert abs(err) <= TOLERANCE, (
        f"{case} {dtype}: planned {predicted / 2**20:.2f} MiB, measured {measured / 2**20:.2f} MiB ({err:+.1%})"
    )


# Llama-3-8B's proportions at a CPU's size: intermediate 3.5x hidden, 4 query heads per KV head. With the MLP
# tiled, the post-attention norm's backward then sets a dense layer's peak (the tiny shape's MLP phase stays
# larger); the plan missed this phase by 19-20% on the H200 until it was modelled.
SHAPE_8B = {
    **SHAPE,
    "hidden_size": 512,
    "intermediate_size": 1792,
    "num_attention_heads": 8,
    "num_hidden_layers": 3,
}


def test_plan_matches_the_norm_backward_peak_of_an_mlp_tiled_layer(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(SHAPE_8B))
    sp = lemo.SparsityConfig(sparse_layers="none", offload="cpu", tile_tokens=128)
    measured = measured_step_peak(torch.bfloat16, True, sp, SHAPE_8B, 1024)
    cfg = PlanConfig(
        model=str(tmp_path),
        seq_len=1024,
        sparsity=sp,
        gradient_checkpointing=True,
        device="cpu",
        host_gib=1e3,
    )
    plan = predict(cfg, advise=False)
    assert any("post-attention norm backward" in k for k in plan.breakdown_gib)
    predicted = (plan.gpu_peak_gib + plan.host_gib - plan.breakdown_gib["weights"]) * 2**30
    predicted -= 12 * lora_params(resolve_shape(str(tmp_path), None), cfg)
    assert abs(predicted - measured) / measured <= 0.05, (predicted / 2**20, measured / 2**20)
