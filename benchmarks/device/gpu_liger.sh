#!/usr/bin/env bash
# Issue 20: Liger-Kernel as the exact baseline, side by side with lemo, in ONE device call (under 10 minutes).
#   LEMO_COMMIT=<commit> OUT=<dir> bash benchmarks/device/gpu_liger.sh          (device: carry [".whl"])
# Llama-3-8B shape, random init, LoRA r8 on q/k/v/o, bf16, gradient checkpointing, `lemo bench`'s defaults
# (backend auto, SparsityConfig()'s keep ratio). Rows (with their provenance: command, commit, GPU, versions,
# liger_kernel included) append to $OUT/e2e_llama3_8b_liger.csv, the log to $OUT/liger.log:
#   1. 16K and 32K, median of 3 steps after 1 warm-up, COMPLETION of each row labelled (default 2%):
#      liger-exact (Liger's RoPE/RMSNorm/SwiGLU/fused linear CE), liger-default+gc (SparsityConfig() at this
#      commit on Liger: the supervision selector and the trimmed last layer, with lemo's own loss) and default+gc
#      (the same without Liger: what lemo alone gives); configs in lemo/bench/configs.py;
#      SHORT_CONFIGS replaces that list (e.g. with backward elimination's lemo-bwd+gc and lemo-bwd-sup+gc);
#   1b. with PROFILE set (e.g. PROFILE=32768): one warm step per PROFILE_CONFIGS under torch.profiler, summarized
#      into $OUT/profile_llama3_8b.csv (benchmarks/e2e/profile_step.py: op families, idle gaps, host syncs), and
#      one more with the allocator's history, whose peak's owners go to $OUT/profile_llama3_8b_peak.csv;
#      with PROFILE_LONG set (e.g. PROFILE_LONG=131072; SHORT= LONG= with it): the same under the 80 GB cap, for
#      PROFILE_LONG_CONFIGS (liger-exact+offload+tiled-attn liger-default+offload+tiled-attn), after a warm-up
#      through a few layers (the first, the first sparse, the last), and the peak's owners of PROFILE_LONG_OWNERS (default: lemo's config, whose 128K and
#      384K peaks the plan predicts 7.9% and 16.5% low; plan_validation.csv) (a 128K step costs a minute: about
#      400 s in all);
#   2. 128K under the 80 GB cap (74.5 GiB), offload and full tiling, one step after a warm-up through a few layers:
#      liger-exact+offload+tiled-attn, liger-default+offload+tiled-attn (LONG_CONFIGS replaces them). The longest
#      row one call can time is about 384K (lemo's default: 364 s a step predicted, plan_long_steps.csv):
#      SHORT= LONG=393216 LONG_CONFIGS=liger-default+offload+tiled-attn DEADLINE=590; 512K (635 s predicted)
#      runs detached, past the call (benchmarks/device/gpu_detached.sh, whose header has the command).
# No network there: Liger travels as its pure-Python wheel in .whl/ (git-ignored through .git/info/exclude):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl liger-kernel==0.8.5
# The command lines run on a CPU too, at a tiny shape, with Liger's kernels in Triton's interpreter (slow):
#   BENCH="python tests/liger_cpu.py" SHAPE=tiny SHORT=128 LONG=256 TILE=64 STEPS=1 LEMO_COMMIT=x OUT=/tmp/o \
#       bash benchmarks/device/gpu_liger.sh
set -euo pipefail
: "${LEMO_COMMIT:?set LEMO_COMMIT (the commit being measured)}"
OUT=${OUT:?set OUT}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/liger_kernel-*.whl
export LEMO_COMMIT PYTHONPATH=src:/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
BENCH=${BENCH:-python benchmarks/e2e/bench.py}
SHAPE=${SHAPE:-llama3-8b}
SHORT=${SHORT-16384 32768}  # SHORT= (empty) skips the short part
LONG=${LONG-131072}  # LONG= (empty) skips the 128K part
TILE=${TILE:-8192}
STEPS=${STEPS:-3}
DEADLINE=${DEADLINE:-570}  # seconds: the call's 600 less a margin for copying $OUT back
CSV=$OUT/e2e_llama3_8b_liger.csv
log() { tee -a "$OUT/liger.log"; }
# shellcheck disable=SC2086  # $BENCH, $SHORT and $LONG are word lists
# COMPLETION: the labelled share of each row (issue 20's setting, 2%; 0 = plain text, every position labelled,
# as the 2026-12-05 run at 3380c6e measured by mistake when this was unset)
bench() { $BENCH --shape "$SHAPE" --tile-tokens "$TILE" --completion "${COMPLETION:-0.02}" --out "$CSV" "$@" 2>&1 | log; }
python -c "import importlib.metadata as m, liger_kernel.transformers; print('liger-kernel', m.version('liger-kernel'))" \
    2>&1 | log
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | log || true
# 1. The short pair: ~40 s to build the model, then ~4-5 min for 4 configs x 2 lengths x 4 steps (warm-up included).
if [ -n "$SHORT" ]; then
    # shellcheck disable=SC2086
    bench --lengths $SHORT --steps "$STEPS" --warmup 1 --budget-s "${SHORT_BUDGET:-300}" \
        --configs ${SHORT_CONFIGS:-liger-exact liger-default+gc default+gc} \
        || echo "short run failed: $?" | log
fi
# 1a. SHORT_KEEPS (e.g. "0.5"): liger-default+gc again at each of these keep ratios, at SHORT_KEEP_LENGTHS (32K)
for k in ${SHORT_KEEPS:-}; do
    # shellcheck disable=SC2086
    bench --lengths ${SHORT_KEEP_LENGTHS:-32768} --steps "$STEPS" --warmup 1 --keep-ratio "$k" \
        --configs liger-default+gc || echo "keep $k run failed: $?" | log
done
# 1b. The profile (issue 20 item 3): a model build, then per config a warm-up step and one profiled step.
if [ -n "${PROFILE:-}" ]; then
    # shellcheck disable=SC2086
    # PROFILE_MARGIN: the seconds kept for the 128K part (set it low with LONG= empty)
    timeout "$((DEADLINE - SECONDS - ${PROFILE_MARGIN:-200}))" python benchmarks/e2e/profile_step.py --shape "$SHAPE" \
        --lengths $PROFILE --completion "${COMPLETION:-0.02}" --out "$OUT/profile_llama3_8b.csv" \
        --traces /tmp/traces --peak-owners --configs ${PROFILE_CONFIGS:-liger-exact liger-default+gc} \
        2>&1 | log || echo "profile failed or timed out: $?" | log
fi
if [ -n "${PROFILE_LONG:-}" ]; then
    # shellcheck disable=SC2086
    timeout "$((DEADLINE - SECONDS - ${PROFILE_MARGIN:-10}))" python benchmarks/e2e/profile_step.py --shape "$SHAPE" \
        --lengths $PROFILE_LONG --completion "${COMPLETION:-0.02}" --out "$OUT/profile_llama3_8b.csv" \
        --traces /tmp/traces --tile-tokens "$TILE" --cap-gib 74.5 --warmup-layers few \
        --peak-owners ${PROFILE_LONG_OWNERS:-liger-default+offload+tiled-attn} \
        --configs ${PROFILE_LONG_CONFIGS:-liger-exact+offload+tiled-attn liger-default+offload+tiled-attn} \
        2>&1 | log || echo "long profile failed or timed out: $?" | log
fi
# 2. 128K: a step is ~60-80 s (plus the few-layer warm-up); the second config starts only if a whole step of it
#    (about 110 s) and the model build (about 45 s) still fit before the deadline.
left=$((DEADLINE - SECONDS - 45 - 110))
echo "128K: ${SECONDS}s spent, second config starts within ${left}s of the model build" | log
if [ -z "$LONG" ]; then
    echo "128K skipped (LONG is empty)" | log
elif [ "$left" -gt 0 ]; then
    # shellcheck disable=SC2086
    bench --lengths $LONG --cap-gib 74.5 --steps 1 --warmup 1 --warmup-layers few --budget-s "$left" \
        --configs ${LONG_CONFIGS:-liger-exact+offload+tiled-attn liger-default+offload+tiled-attn} \
        || echo "long run failed: $?" | log
else
    echo "no time left for 128K" | log
fi
echo "done in ${SECONDS}s" | log
