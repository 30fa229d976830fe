"""`lemo plan` under backward elimination (`SparsityConfig(elimination="backward")`): what it stores, what its
backward holds, its work, its header, and the committed H200 rows (tests/plan/test_cpu_peaks.py measures it on a
CPU)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import lemo
from lemo.plan import SHAPES, PlanConfig, predict
from lemo.plan.memory import estimate, kept_rows, layer_working
from lemo.plan.saved import lora_of, normed_input
from lemo.plan.time import FLASH_BACKWARD, work

ROOT = Path(__file__).resolve().parents[2]
GIB = 2**30
T = 131072
LONG = dict(shape="llama3-8b", seq_len=T, gradient_checkpointing=True, host_gib=1e3)
SHAPE = SHAPES["llama3-8b"]


def _plan(**sparsity) -> lemo.plan.Plan:
    return predict(PlanConfig(**LONG, sparsity=lemo.SparsityConfig(**sparsity)), advise=False)


def _bwd(**sparsity) -> lemo.plan.Plan:
    return _plan(elimination="backward", **sparsity)


def test_offloaded_inputs_are_the_whole_layer_inputs():
    # Backward elimination stores every row of a sparse layer's input, so the host pool is that of exact + offload,
    # not forward elimination's kept rows.
    backward, forward = _bwd(offload="cpu"), _plan(offload="cpu")
    exact = _plan(offload="cpu", sparse_layers="none")
    full = SHAPE.layers * 2 * SHAPE.hidden * T / GIB  # 32 layers x [T, d] in bf16
    assert backward.host_gib == pytest.approx(full) == pytest.approx(exact.host_gib)
    kept = kept_rows(T, lemo.SparsityConfig().keep_ratio, lemo.SparsityConfig())
    assert forward.host_gib == pytest.approx(full * (16 + 16 * kept / T) / 32)
    assert backward.breakdown_gib["stored inputs (in flight)"] == pytest.approx(2 * full / 32)


def test_peak_grows_with_keep_but_stored_inputs_do_not():
    # Every layer sparse, so a sparse layer's backward (the kept rows' recompute) sets the peak. Below keep 0.5
    # the no-graph forward of the whole layer does, since the adapters keep their bf16 inputs (share_lora_inputs).
    keeps = (0.5, 0.6, 0.9)
    plans = [_bwd(sparse_layers="all", keep_ratio=k) for k in keeps]
    assert all(p.phase == "backward of layer 31 (sparse)" for p in plans)
    assert len({p.breakdown_gib["stored layer inputs"] for p in plans}) == 1
    peaks = [p.gpu_peak_gib for p in plans]
    assert peaks[0] < peaks[1] < peaks[2]
    # Only the kept rows' terms grow; K/V are recomputed for every row whatever the keep ratio.
    assert len({p.breakdown_gib["layer 31 K/V of every row"] for p in plans}) == 1
    kept = [p.breakdown_gib["layer 31 kept MLP activations+grads"] for p in plans]
    assert kept[1] / kept[0] == pytest.approx(
        kept_rows(T, keeps[1], plans[0].config.sparsity) / kept_rows(T, keeps[0], plans[0].config.sparsity)
    )


def test_tiling_shrinks_the_working_set_of_the_recompute():
    # PEFT's fp32 input copies (share_lora_inputs off) make the MLP the larger phase, which tiling then shrinks.
    peft = dict(sparse_layers="all", share_lora_inputs=False)
    plans = [
        _bwd(**peft),
        _bwd(**peft, tile_tokens=8192),
        _bwd(**peft, tile_tokens=8192, tile_attention=True, offload="cpu"),
    ]
    working = []
    for p in plans:
        last = estimate(SHAPE, p.config).layers[31]
        working.append(layer_working(SHAPE, last, p.config, 2))
    totals = [sum(w.values()) for w in working]
    assert totals[2] < totals[1] < totals[0]
    # MLP tiled alone, the post-attention norm's backward over the kept rows becomes the larger phase.
    assert "kept post-attention norm backward" in working[1] and "kept MLP (one tile)" in working[2]
    # Fully tiled, the layers' working sets fall below the final norm's full-length backward.
    assert plans[2].phase == "backward of the final norm"
    assert plans[2].gpu_peak_gib < plans[1].gpu_peak_gib < plans[0].gpu_peak_gib


def test_keep_one_is_exact_but_for_the_recompute():
    # Every row kept: the same stored inputs as exact; the layer's backward holds a second norm input and RoPE
    # tables gathered for the kept rows (their queries are made apart from the K/V of every row), the kept update
    # and its gradient, and each sparse layer keeps its RoPE tables and row ids.
    backward, exact = _bwd(sparse_layers="all", keep_ratio=1.0), _plan(sparse_layers="none")
    assert backward.breakdown_gib["stored layer inputs"] == exact.breakdown_gib["stored layer inputs"]
    e, d = 2, SHAPE.hidden
    norm = normed_input(SHAPE, lora_of(backward.config), ("q_proj",), e)
    held = SHAPE.layers * (2 * e * SHAPE.head_dim * T + 24 * T)
    extra = ((norm + 2 * e * SHAPE.head_dim + 2 * e * d) * T + held) / GIB
    assert backward.gpu_peak_gib - exact.gpu_peak_gib == pytest.approx(extra, rel=1e-6)
    # Its linear work is exact's: one forward, one recompute, one backward of every row.
    cfgs = [p.config for p in (backward, exact)]
    w_bwd, w_exact = (work(SHAPE, c, estimate(SHAPE, c)) for c in cfgs)
    assert w_bwd.linear_flop == pytest.approx(w_exact.linear_flop)


def test_work_is_a_dense_forward_and_the_kept_share_of_the_backward():
    cfg, exact_cfg = _bwd().config, _plan(sparse_layers="none").config
    w, exact = (work(SHAPE, c, estimate(SHAPE, c)) for c in (cfg, exact_cfg))
    kept = kept_rows(T, cfg.sparsity.keep_ratio, cfg.sparsity) / T
    causal = 2 * T * T * SHAPE.heads * SHAPE.head_dim
    assert w.sparse_attention_flop == pytest.approx(16 * causal * (1 + kept * (1 + FLASH_BACKWARD)))
    assert w.sparse_launches == 16 * 3 and w.launches == 16 * 3
    assert w.linear_flop < exact.linear_flop
    assert _bwd().step_s < _bwd(keep_ratio=0.9).step_s


def test_low_keep_makes_the_dense_forward_the_peak():
    plan = _bwd(sparse_layers="all", keep_ratio=0.1)
    assert plan.phase == "forward of layer 31 (sparse, backward elimination)"
    assert plan.breakdown_gib["layer 31 forward (every row, no graph)"] > 0


def test_header_says_backward_elimination_and_its_scorer():
    text = _bwd(scorer="gradient", random_fraction=0.25).format()
    assert "backward elimination on layers 15-30: every row runs the forward" in text
    assert "scorer=gradient + 25% random, chosen in each layer's backward, labelled blocks first" in text
    assert "mlp=" not in text and "loss on every labelled position" in text
    assert "random blocks" in _bwd(random_fraction=1.0).format()
    assert "scorer=supervision + 25% random" in _bwd().format()  # the default selector
    breakdown = _bwd(sparse_layers="all").format()
    assert (
        "layer 31 K/V of every row" in breakdown and "backward-elimination RoPE tables, row ids" in breakdown
    )


def test_committed_validation_has_the_backward_rows():
    rows = list(csv.DictReader((ROOT / "benchmarks" / "results" / "plan_validation.csv").open()))
    backward = [r for r in rows if r["config"] in ("lemo-bwd+gc", "lemo-bwd-sup+gc")]
    assert {(r["config"], r["seq_len"]) for r in backward} >= {
        (c, t) for c in ("lemo-bwd+gc", "lemo-bwd-sup+gc") for t in ("16384", "32768")
    }
    # Peaks scored (the H200 rows of e2e_llama3_8b_liger.csv); step times shown, not scored: those rows ran the
    # kept queries' attention as one SDPA call per run, which the Triton kernel the plan times has replaced.
    assert all(r["scored"] == "peak" and abs(float(r["peak_err_pct"])) <= 1.0 for r in backward)
    assert all(float(r["step_err_pct"]) < 0 for r in backward)
    # Liger's kernels are modelled (PlanConfig.liger): its rows' peaks are scored like the others.
    liger = [r for r in rows if r["config"].startswith("liger-")]
    assert len(liger) >= 8 and all(r["scored"] in ("yes", "peak") for r in liger)
    # A known miss, kept visible rather than dropped (docs/plan.md, Validation): the trimmed default with the
    # supervision selector at keep 0.6 and 2% labelled (H100, ca33484) peaked 0.30 / 0.60 GiB above the plan at
    # 16K / 32K, about 19 KiB a token, cause not found. Pinned where it is: fixing the model must tighten this.
    missed = [
        r
        for r in liger
        if (r["config"], r["keep_ratio"], r["commit"][:7]) == ("liger-default+gc", "0.6", "ca33484")
    ]
    assert sorted(r["seq_len"] for r in missed) == ["16384", "32768"]
    assert all(-2.5 <= float(r["peak_err_pct"]) < -1.0 for r in missed)
    # The second known miss: with offload (the 128K-512K rows, H100), the plan is low and more so at longer T,
    # -1.1..-2.4% at 128K with full tiling, -6.1% at 384K, -7.6% at 512K (docs/plan.md, Validation: the embedding
    # output and a double count found, the rest not). Pinned per length, so a fix must tighten it.
    offload = [r for r in liger if "+offload" in r["config"]]
    long_rows = {r["seq_len"]: float(r["peak_err_pct"]) for r in offload if r["seq_len"] != "131072"}
    assert long_rows.keys() == {"393216", "524288"}
    assert -6.5 <= long_rows["393216"] < -5.0 and -8.0 <= long_rows["524288"] < -6.5
    assert all(-2.5 <= float(r["peak_err_pct"]) <= 1.6 for r in offload if r["seq_len"] == "131072")
    assert all(abs(float(r["peak_err_pct"])) <= 1.0 for r in liger if r not in missed and r not in offload)
