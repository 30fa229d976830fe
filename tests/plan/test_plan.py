"""`lemo plan`: shapes, settings, verdicts and advice, the CLI, and the committed validation table."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

import lemo
import lemo.plan.core as plan_core
from lemo.cli.__main__ import main
from lemo.ops import select_by_ratio
from lemo.plan import SHAPES, PlanConfig, check_fits, longest_seq_len, predict, resolve_shape
from lemo.plan.memory import kept_rows

ROOT = Path(__file__).resolve().parents[2]
LONG = dict(shape="llama3-8b", seq_len=131072, gradient_checkpointing=True, host_gib=120.0)


def test_config_json_is_read_without_weights(tmp_path):
    cfg = {
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "vocab_size": 49152,
        "head_dim": 64,
        "tie_word_embeddings": True,
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert resolve_shape(str(tmp_path), None).total_params() == SHAPES["smollm2"].total_params()
    # 134.5M parameters: SmolLM2-135M with its tied embedding counted once.
    assert SHAPES["smollm2"].total_params() == pytest.approx(134.5e6, rel=0.01)


@pytest.mark.parametrize(
    ("kwargs", "fix"),
    [
        (dict(shape="llama3-8b", model="x"), "not both"),
        (dict(shape="gpt5"), "--shape 'gpt5' is unknown"),
        (dict(), "pass --model DIR"),
        (dict(model="/nonexistent/dir"), "config.json"),
        (dict(shape="tiny", seq_len=0), "--seq-len"),
        (dict(shape="tiny", lora={"targets": ["qkv"]}), "q_proj"),
        (dict(shape="tiny", sparsity=lemo.SparsityConfig(selection="threshold")), "keep_ratio"),
        (dict(shape="tiny", gpu_gib=-1.0), "--gpu-gib"),
    ],
)
def test_bad_settings_name_the_fix(kwargs, fix):
    with pytest.raises((ValueError, FileNotFoundError), match=fix):
        predict(PlanConfig(**kwargs))


def test_missing_config_field_names_it(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 64}))
    with pytest.raises(ValueError, match="intermediate_size"):
        predict(PlanConfig(model=str(tmp_path)))


@pytest.mark.parametrize(("T", "keep"), [(4096, 0.6), (1000, 0.4), (32768, 0.25), (200, 0.9)])
def test_kept_rows_match_the_selection(T, keep):
    cfg = lemo.SparsityConfig(keep_ratio=keep)
    nb = -(-T // cfg.block_size)
    blocks = select_by_ratio(torch.rand(nb), keep, cfg.sink_blocks, cfg.local_blocks)
    tokens = sum(min(cfg.block_size, T - b * cfg.block_size) for b in blocks.tolist())
    assert kept_rows(T, keep, cfg) == tokens


# The last layer run whole (not trimmed to the scored rows): its backward is the peak these tests look at.
WHOLE = {"trim_last_layer": False}
# Keep 0.6 (the default until 2026-12-05), where lemo at 128K needs offload to fit 74.5 GiB: the verdict tests
# below need a plan that does not fit as it is (at today's keep 0.5 this one fits).
KEEP06 = lemo.SparsityConfig(keep_ratio=0.6)


def test_offload_moves_the_stored_inputs_to_the_host():
    on_gpu = predict(PlanConfig(**LONG, sparsity=lemo.SparsityConfig(**WHOLE)))
    off = predict(PlanConfig(**LONG, sparsity=lemo.SparsityConfig(offload="cpu", **WHOLE)))
    stored = on_gpu.breakdown_gib["stored layer inputs"]
    assert off.host_gib == pytest.approx(stored)
    # Llama-3-8B at 128K: 16 dense layers x 1 GiB and 16 sparse ones x the kept share of 1 GiB.
    cfg = lemo.SparsityConfig()
    assert stored == pytest.approx(16 * 1.0 + 16 * kept_rows(131072, cfg.keep_ratio, cfg) / 131072, rel=1e-6)
    assert off.gpu_peak_gib < on_gpu.gpu_peak_gib - stored + 2.1  # at most two layers' inputs stay in flight


def test_tiling_bounds_the_mlp_working_set():
    plain = predict(PlanConfig(**LONG, sparsity=lemo.SparsityConfig(**WHOLE)))
    tiled = predict(PlanConfig(**LONG, sparsity=lemo.SparsityConfig(tile_tokens=8192, **WHOLE)))
    mlp = plain.breakdown_gib["layer 31 MLP activations+grads"]
    # Tiled, the MLP's working set falls below that of the post-attention norm's backward, which then sets the
    # layer's peak (larger than SDPA's backward: benchmarks/plan/plan_peak_probe.py, and the H200's longest-T rows).
    assert tiled.breakdown_gib["layer 31 post-attention norm backward"] < 0.7 * mlp
    assert "layer 31 MLP (tiled)" not in tiled.breakdown_gib
    assert "layer 31 attention backward (SDPA)" not in tiled.breakdown_gib
    assert tiled.gpu_peak_gib < plain.gpu_peak_gib
    assert tiled.step_s > plain.step_s  # the tiles are recomputed in backward


def test_sdpa_backward_term_is_the_measured_one():
    # benchmarks/plan/attention_backward_probe.py on the H200: one HF layer of the Llama-3-8B shape.
    from lemo.plan.saved import sdpa_backward
    from lemo.plan.shapes import SHAPES

    rows = list(csv.DictReader((ROOT / "benchmarks" / "results" / "attention_backward_probe.csv").open()))
    [row] = [r for r in rows if r["measure"].startswith("attention backward peak")]
    measured = float(row["kib_per_token_T131072"])
    assert abs(sdpa_backward(SHAPES["llama3-8b"], 2) / 1024 - measured) < 0.5


def test_too_big_plan_advises_and_check_fits_refuses():
    # 144K: 128K fits since the adapters keep their bf16 inputs (share_lora_inputs)
    plan = predict(PlanConfig(**{**LONG, "seq_len": 147456}, gpu_gib=74.5, sparsity=KEEP06))
    assert not plan.fits
    assert any("--offload cpu" in a and a.endswith("(fits)") for a in plan.advice)
    assert any(a.startswith("or shorten the rows: --seq-len") for a in plan.advice)
    with pytest.raises(ValueError, match="will not fit") as err:
        check_fits(plan, "cuda")
    assert "advice:" in str(err.value) and "--no-plan" in str(err.value)
    fine = predict(PlanConfig(shape="llama3-8b", seq_len=8192, gradient_checkpointing=True, gpu_gib=74.5))
    assert fine.fits and not fine.advice
    assert check_fits(fine, "cuda") is fine or check_fits(fine, "cuda").fits


def test_host_limit_is_a_verdict_too():
    plan = predict(PlanConfig(**{**LONG, "host_gib": 4.0}, sparsity=lemo.SparsityConfig(offload="cpu")))
    assert plan.fits_gpu and not plan.fits_host and not plan.fits
    assert "host memory" in plan.advice[0]


def test_longest_seq_len_is_the_boundary():
    cfg = PlanConfig(shape="llama3-8b", gradient_checkpointing=True, gpu_gib=74.5)
    T = longest_seq_len(cfg, granularity=8192)
    assert predict(cfg, seq_len=T).fits and not predict(cfg, seq_len=T + 8192).fits


def test_no_checkpointing_is_advised_first():
    plan = predict(PlanConfig(shape="llama3-8b", seq_len=32768, gpu_gib=74.5))
    assert "gradient checkpointing" in plan.advice[0] or any(
        "gradient checkpointing" in a for a in plan.advice
    )


def test_from_finetune_plans_what_finetune_runs():
    from lemo.config import FinetuneConfig

    ft = FinetuneConfig(seq_len=16384, gradient_checkpointing=True, device="cuda", dtype="auto")
    cfg = PlanConfig.from_finetune(ft, shape="smollm2")
    assert (cfg.seq_len, cfg.dtype, cfg.device, cfg.checkpointing) == (16384, "bf16", "cuda", True)
    assert cfg.sparsity == ft.sparsity and cfg.lora.targets == ft.lora.targets


def test_plan_and_finetune_share_one_lora_section():
    from lemo.config import FinetuneConfig, LoraSettings

    ft = FinetuneConfig(lora={"rank": 16, "alpha": 32.0, "targets": "q_proj,v_proj"})
    plan = PlanConfig.from_finetune(ft, shape="smollm2")
    assert isinstance(plan.lora, LoraSettings) and plan.lora == ft.lora  # the same class, nothing dropped
    assert PlanConfig(lora={"rank": 4}).lora == LoraSettings(rank=4)  # a YAML `lora:` mapping builds it too
    with pytest.raises(ValueError, match="--lora-rank 0 must be at least 1"):
        PlanConfig(lora={"rank": 0})


def test_cli_prints_the_table(capsys):
    rc = main(
        [
            "plan",
            "--shape",
            "llama3-8b",
            "--seq-len",
            "131072",
            "--gradient-checkpointing",
            "--offload",
            "cpu",
            "--tile-tokens",
            "8192",
            "--host-gib",
            "120",
            "--lora-rank",
            "16",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "GPU peak (allocated)" in out and "host (pinned offload)" in out and "LoRA r=16" in out


def test_cli_bad_flag_is_an_error(capsys):
    assert main(["plan", "--shape", "nope"]) == 2
    assert "--shape 'nope' is unknown" in capsys.readouterr().err


def test_committed_validation_table_holds_the_target():
    rows = list(csv.DictReader((ROOT / "benchmarks" / "results" / "plan_validation.csv").open()))
    scored = [r for r in rows if r["scored"] == "yes" and r["kind"] == "step"]
    assert len(scored) >= 90
    # The target is 10% on every row (the MLP-only-tiled rows missed it by up to -19.6% until the post-attention
    # norm's backward was modelled; docs/plan.md).
    misses = {(r["file"], r["config"], r["seq_len"]) for r in scored if abs(float(r["peak_err_pct"])) > 10}
    assert misses == set()
    assert all(r["scored"] != "oom-miss" for r in rows)
    errs = sorted(abs(float(r["step_err_pct"])) for r in scored)
    assert errs[len(errs) // 2] <= 10  # median step-time error
    assert math.isfinite(sum(errs))


def test_out_of_memory_message_has_the_plan_and_advice():
    from lemo.plan import explain_oom

    plan = predict(PlanConfig(**LONG, gpu_gib=140.0))
    assert plan.fits
    text = explain_oom(plan, measured_peak_gib=139.2)
    assert "139.20 GiB" in text and "GPU peak (allocated)" in text and "advice:" in text


def test_cpu_runs_are_checked_against_host_ram():
    plan = predict(PlanConfig(shape="llama3-8b", seq_len=131072, dtype="fp32", device="cpu", host_gib=16.0))
    with pytest.raises(ValueError, match="will not fit"):
        check_fits(plan, "cpu")
    small = predict(PlanConfig(shape="tiny", seq_len=1024, dtype="fp32", device="cpu", host_gib=16.0))
    assert check_fits(small, torch.device("cpu")) is small


def test_fsdp2_ranks_hold_a_shard_of_the_weights_and_load_them_whole_first():
    one = predict(PlanConfig(**LONG))
    two = predict(PlanConfig(**LONG, world_size=2))
    assert two.breakdown_gib["weights"] == pytest.approx(one.breakdown_gib["weights"] / 2)
    assert two.breakdown_gib["LoRA + AdamW"] == pytest.approx(one.breakdown_gib["LoRA + AdamW"] / 2)
    assert two.breakdown_gib["gathered layers (FSDP2)"] > 0
    assert two.gpu_peak_gib < one.gpu_peak_gib
    # Short rows: loading the whole model onto each GPU before sharding is the peak.
    short = predict(PlanConfig(shape="llama3-8b", seq_len=1024, world_size=2))
    assert short.phase == "loading the weights (before sharding)"
    assert short.gpu_peak_gib == pytest.approx(one.breakdown_gib["weights"])


def test_ranks_of_one_node_share_its_host_memory():
    offload = lemo.SparsityConfig(offload="cpu")
    big = {**LONG, "host_gib": 1e6}
    one = predict(PlanConfig(**big, sparsity=offload))
    node = predict(PlanConfig(**big, sparsity=offload, world_size=4))
    spread = predict(PlanConfig(**big, sparsity=offload, world_size=4, ranks_per_node=1))
    assert node.host_gib == pytest.approx(4 * one.host_gib)
    assert spread.host_gib == pytest.approx(one.host_gib)
    with pytest.raises(ValueError, match="--world-size 0 must be a positive number of ranks"):
        PlanConfig(**LONG, world_size=0)
    with pytest.raises(ValueError, match="--ranks-per-node 3 exceeds --world-size 2"):
        PlanConfig(**LONG, world_size=2, ranks_per_node=3)


def test_finetune_plans_for_the_torchrun_job_it_is_in(monkeypatch):
    from lemo.config import FinetuneConfig
    from lemo.train.preflight import plan_config

    cfg = FinetuneConfig(seq_len=4096)
    assert plan_config(cfg).world_size == 1
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two nodes of two GPUs
    planned = plan_config(cfg)
    assert (planned.world_size, planned.ranks_per_node) == (4, 2)


def test_full_tiling_times_dense_attention_at_lemos_kernel_rate():
    # With tile_attention, dense layers run lemo's layer forward, and with attention_kernel="lemo" its attention
    # kernel, not HF's SDPA ("auto" runs SDPA: test_attention_through_sdpa_runs_at_sdpa_rate).
    from lemo.plan.memory import estimate
    from lemo.plan.time import work

    shape = SHAPES["llama3-8b"]
    exact = dict(sparse_layers="none", offload="cpu", tile_tokens=8192, attention_kernel="lemo")
    mlp_only = PlanConfig(**LONG, sparsity=lemo.SparsityConfig(**exact))
    full = PlanConfig(**LONG, sparsity=lemo.SparsityConfig(**exact, tile_attention=True))
    w_mlp, w_full = (work(shape, c, estimate(shape, c)) for c in (mlp_only, full))
    assert w_mlp.sparse_attention_flop == 0 and w_mlp.attention_flop > 0
    assert w_full.attention_flop == 0 and w_full.sparse_attention_flop == pytest.approx(w_mlp.attention_flop)
    assert predict(full).step_s > predict(mlp_only).step_s  # lemo's kernel is the slower rate


OFFLOAD_8B = ["plan", "--shape", "llama3-8b", "--seq-len", "131072", "--offload", "cpu", "--gpu-gib", "74.5"]


def test_cli_exits_1_when_the_run_does_not_fit(capsys):
    # A script (or CI) can branch on the verdict: 0 fits, 1 does not fit, 2 a bad argument.
    assert main([*OFFLOAD_8B, "--host-gib", "120"]) == 0
    assert main([*OFFLOAD_8B, "--host-gib", "4"]) == 1
    assert "verdict: DOES NOT FIT" in capsys.readouterr().out
    assert main(["plan", "--shape", "llama3-8b", "--seq-len", "131072", "--gpu-gib", "40"]) == 1


def test_gpu_and_host_verdicts_are_separate_and_name_what_is_short():
    offload = dataclasses.replace(KEEP06, offload="cpu")
    host_short = predict(PlanConfig(**{**LONG, "host_gib": 4.0}, sparsity=offload))
    text = host_short.format()
    assert ": fits" in text.split("GPU need")[1].splitlines()[0]  # the GPU line judges the GPU alone
    [verdict] = [line for line in text.splitlines() if line.startswith("verdict:")]
    assert "host memory: 25.6 GiB needed pinned for offload, only 4.0 GiB (--host-gib)" in verdict
    assert "GPU memory" not in verdict
    gpu_short = predict(PlanConfig(**LONG, gpu_gib=40.0))
    [verdict] = [line for line in gpu_short.format().splitlines() if line.startswith("verdict:")]
    assert "GPU memory: " in verdict and "cap 40.0 GiB" in verdict and "host" not in verdict


def test_host_cap_read_on_the_planning_machine_says_so(monkeypatch):
    # A 24 GB laptop planning for a GPU server: offload fits the GPU, and the advice must say that the host RAM it
    # is refused for is this machine's, and how to give the target's.
    monkeypatch.delenv("LEMO_HOST_GIB", raising=False)
    monkeypatch.setattr(plan_core, "available_host_gib", lambda: 20.0)
    long = {
        **LONG,
        "seq_len": 147456,
    }  # too long for the GPU as configured (128K fits with shared LoRA inputs)
    plan = predict(PlanConfig(**{**long, "host_gib": None}, gpu_gib=74.5, sparsity=KEEP06))
    assert plan.host_source == plan_core.LOCAL_HOST
    [offload] = [a for a in plan.advice if a.startswith("offload stored layer inputs")]
    assert offload.endswith("(still too big: host 28.8 > 20.0 GiB free on this machine)")
    assert any("pass --host-gib N" in a for a in plan.advice)
    target = predict(PlanConfig(**{**long, "host_gib": 120.0}, gpu_gib=74.5, sparsity=KEEP06))
    assert any(a.startswith("offload stored layer inputs") and a.endswith("(fits)") for a in target.advice)


def test_host_gib_flag_and_env_var_are_one_setting(monkeypatch):
    monkeypatch.setenv("LEMO_HOST_GIB", "10")
    offload = lemo.SparsityConfig(offload="cpu")
    from_env = predict(PlanConfig(**{**LONG, "host_gib": None}, sparsity=offload))
    assert (from_env.host_cap_gib, from_env.host_source, from_env.fits_host) == (10.0, "LEMO_HOST_GIB", False)
    assert "only 10.0 GiB (LEMO_HOST_GIB)" in from_env.format()
    flag = predict(PlanConfig(**{**LONG, "host_gib": 120.0}, sparsity=offload))  # the flag wins
    assert (flag.host_cap_gib, flag.host_source, flag.fits_host) == (120.0, "--host-gib", True)


def test_cpu_plan_judges_the_whole_step_against_the_host(capsys):
    args = ["plan", "--shape", "llama3-8b", "--seq-len", "131072", "--dtype", "fp32", "--device", "cpu"]
    assert main([*args, "--host-gib", "16"]) == 1
    out = capsys.readouterr().out
    assert "on no GPU" in out and "host memory: " in out and "needed for the whole step" in out
    assert main(["plan", "--shape", "tiny", "--seq-len", "1024", "--dtype", "fp32", "--device", "cpu",
                 "--host-gib", "16"]) == 0  # fmt: skip


def test_the_trimmed_last_layer_leaves_the_peak_to_the_top_dense_layer_below_the_sparse_ones():
    """Llama-3-8B at 32K, 2% of the row labelled: trimmed to the scored rows, layer 31's backward is small, so the
    peak is layer 14's (as with the last layer sparse, "upper"), and the step is shorter."""
    base = dict(shape="llama3-8b", seq_len=32768, gradient_checkpointing=True, labelled_fraction=0.02)
    whole = predict(PlanConfig(**base, sparsity=lemo.SparsityConfig(**WHOLE)))
    trimmed = predict(PlanConfig(**base))
    upper = predict(PlanConfig(**base, sparsity=lemo.SparsityConfig(sparse_layers="upper")))
    assert whole.phase == "backward of layer 31" and trimmed.phase == "backward of layer 14"
    assert trimmed.gpu_peak_gib == pytest.approx(upper.gpu_peak_gib)
    assert trimmed.gpu_peak_gib < whole.gpu_peak_gib - 2
    assert trimmed.step_s < 0.98 * whole.step_s
    # Plain text without elimination scores every row: nothing is trimmed (TRIM_MAX_SHARE).
    exact = dict(base, labelled_fraction=1.0)
    none = [predict(PlanConfig(**exact, sparsity=lemo.SparsityConfig(sparse_layers="none", trim_last_layer=t)))
            for t in (False, True)]  # fmt: skip
    assert none[0].gpu_peak_gib == none[1].gpu_peak_gib and none[0].step_s == none[1].step_s


def test_liger_saves_what_the_measured_pairs_differ_by():
    """Every exact and lemo config and its Liger twin measured 3.125 GiB apart at 32K on the Llama-3-8B shape
    (e2e_llama3_8b_liger.csv): 102,400 bytes a token at a dense layer's backward. The plan's Liger terms (fp32
    norm inputs not saved, no SiLU(gate) copy, SwiGLU gradients in place) give 102,392."""
    base = dict(shape="llama3-8b", seq_len=32768, gradient_checkpointing=True, labelled_fraction=0.02)
    for sparsity in (lemo.SparsityConfig(sparse_layers="none", **WHOLE), lemo.SparsityConfig.paper(**WHOLE)):
        hf = predict(PlanConfig(**base, sparsity=sparsity))
        fused = predict(PlanConfig(**base, sparsity=sparsity, liger=True))
        assert hf.phase == fused.phase == "backward of layer 31"
        per_token = (hf.gpu_peak_gib - fused.gpu_peak_gib) * 2**30 / 32768
        assert per_token == pytest.approx(102_400, rel=1e-3)


def test_liger_exact_keeps_its_fused_loss():
    """Without lemo, a Liger model's loss is Liger's fused linear cross-entropy: one chunk of logits, not HF's
    three fp32 [T, V] tensors, over every position."""
    base = dict(shape="llama3-8b", seq_len=32768, sparse=False, gradient_checkpointing=True)
    hf = predict(PlanConfig(**base))
    fused = predict(PlanConfig(**base, liger=True))
    assert hf.phase.startswith("loss") and not fused.phase.startswith("loss")
    assert fused.gpu_peak_gib < hf.gpu_peak_gib - 40


def test_advice_names_liger_and_the_trimmed_last_layer_when_they_make_it_fit():
    cfg = PlanConfig(
        shape="llama3-8b",
        seq_len=131072,
        gradient_checkpointing=True,
        labelled_fraction=0.02,
        gpu_gib=74.5,
        host_gib=16.0,
        sparsity=lemo.SparsityConfig(**WHOLE),
    )
    advice = predict(cfg).advice
    liger = next(a for a in advice if "--liger" in a)
    trim = next(a for a in advice if "--trim-last-layer" in a)
    assert liger.endswith("(fits)") and trim.endswith("(fits)")


def test_the_plan_says_when_liger_runs_and_the_last_layer_is_trimmed():
    base = dict(shape="llama3-8b", seq_len=32768, gradient_checkpointing=True, labelled_fraction=0.02)
    text = predict(PlanConfig(**base, liger=True)).format()
    assert "Liger-Kernel's RMSNorm, SwiGLU and RoPE" in text and "fused loss" not in text
    assert "last layer trimmed to the 656 scored rows" in text  # 2% of 32768, rounded up
    whole = predict(PlanConfig(**base, sparsity=lemo.SparsityConfig(**WHOLE))).format()
    assert "Liger" not in whole and "trimmed" not in whole
    plain = predict(PlanConfig(shape="llama3-8b", seq_len=8192, sparse=False, liger=True)).format()
    assert "and its fused loss" in plain


def test_liger_saves_only_inside_the_tiles_of_a_tiled_mlp():
    """With the MLP in row tiles, Liger's kernels run inside the tiles: what spans the rows (the tiles' input, its
    gradient, the norm's input) is the same with and without Liger, as the CPU probe lists at the peak
    (plan_peak_probe.csv, tiled-attn rows); only one tile's activations shrink."""
    from lemo.plan.saved import mlp_working
    from lemo.plan.shapes import SHAPES

    tiled = lemo.SparsityConfig(tile_tokens=8192, offload="cpu")
    liger, hf = (PlanConfig(**LONG, sparsity=tiled, liger=on) for on in (True, False))
    shape, tile = SHAPES["llama3-8b"], 8192
    for rows in (131072, 262144):
        saved = [mlp_working(shape, rows, cfg, 2)["MLP (tiled)"] for cfg in (hf, liger)]
        longer = [mlp_working(shape, rows + tile, cfg, 2)["MLP (tiled)"] for cfg in (hf, liger)]
        # a tile's worth, not the rows': SwiGLU's SiLU(gate) copy and two of its three gradients, in bf16
        assert saved[0] - saved[1] == 3 * 2 * shape.intermediate * tile
        assert longer[0] - saved[0] == longer[1] - saved[1]  # the same bytes per row


KERNELS = ("auto", "lemo")


def test_attention_through_sdpa_runs_at_sdpa_rate():
    """attention_kernel="auto" on a GPU (one row: SDPA) plans the layers' attention at SDPA's fitted rate, "lemo" at
    lemo's varlen kernel's; the memory is the same, and a CPU plan (the reference: SDPA) does not change."""
    tiled = dict(offload="cpu", tile_tokens=8192, tile_attention=True)
    auto = predict(PlanConfig(**LONG, sparsity=lemo.SparsityConfig(**tiled)))
    kernel = predict(PlanConfig(**LONG, sparsity=lemo.SparsityConfig(attention_kernel="lemo", **tiled)))
    assert auto.step_s < 0.9 * kernel.step_s
    # SDPA repeats K and V per query head: 4 GiB more at 128K, as measured (e2e_llama3_8b_liger.csv, 67e29b8)
    [repeated] = [v for k, v in auto.breakdown_gib.items() if k.endswith("SDPA's repeated K/V")]
    assert repeated == pytest.approx(4.0) and 3.0 < auto.gpu_peak_gib - kernel.gpu_peak_gib <= 4.0
    # past 128K rows (a layer's, kept or not) "auto" keeps lemo's kernel, whose grouped heads need no copies
    longer = {**LONG, "seq_len": 524288}
    a, b = (
        predict(PlanConfig(**longer, sparsity=lemo.SparsityConfig(attention_kernel=k, **tiled)))
        for k in KERNELS
    )
    assert (a.step_s, a.gpu_peak_gib) == (b.step_s, b.gpu_peak_gib)
    cpu = dict(shape="tiny", seq_len=4096, device="cpu", dtype="fp32")
    assert (
        predict(PlanConfig(**cpu, sparsity=lemo.SparsityConfig())).step_s
        == predict(PlanConfig(**cpu, sparsity=lemo.SparsityConfig(attention_kernel="lemo"))).step_s
    )


def test_advice_names_lemos_attention_kernel_where_sdpas_copies_do_not_fit():
    forced = lemo.SparsityConfig(
        offload="cpu", tile_tokens=8192, tile_attention=True, attention_kernel="sdpa"
    )
    plan = predict(PlanConfig(**{**LONG, "seq_len": 524288}, gpu_gib=74.5, sparsity=forced))
    assert not plan.fits and "layer 14 SDPA's repeated K/V" in plan.breakdown_gib
    [line] = [a for a in plan.advice if "--attention-kernel lemo" in a]
    kernel = predict(
        PlanConfig(
            **{**LONG, "seq_len": 524288},
            gpu_gib=74.5,
            sparsity=dataclasses.replace(forced, attention_kernel="lemo"),
        )
    )
    assert f"GPU {kernel.gpu_peak_gib:.1f} GiB" in line and kernel.gpu_peak_gib < plan.gpu_peak_gib - 8
