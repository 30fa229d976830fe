#!/usr/bin/env bash
# The GPU runs of issue 10 (longest context on one GPU), one section per device call (each within 10 minutes).
# Llama-3-8B shape, random weights (memory and time do not depend on weight values), GPU capped at 80 GB.
#   bash benchmarks/device/gpu_longest.sh overhead   # GPU tests, then 32K and 128K: offload and tiling overhead
#   bash benchmarks/device/gpu_longest.sh pair T     # exact+offload+tiled and lemo+offload+tiled, one step at T
#   bash benchmarks/device/gpu_longest.sh one CONFIG T...   # one config, one step at each T (shortest first)
#   bash benchmarks/device/gpu_longest.sh warm CONFIG T     # one step at T after a warm-up through two layers only
#                                                    # (kernels compiled and tuned at T's shapes; see --warmup-layers)
#   bash benchmarks/device/gpu_longest.sh probe CONFIG T... # the longest-T search at the given T (a plan's prediction
#                                                    # and one step above), shortest first, stopping at the first
#                                                    # failure; into e2e_llama3_8b_offload_longest.csv. Predictions:
#                                                    # benchmarks/results/longest_prediction.csv.
# Needs LEMO_COMMIT and OUT.
set -euo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
OUT=${OUT:?set OUT}
mkdir -p "$OUT"
CSV=$OUT/e2e_llama3_8b_offload.csv
CAP=74.5  # 80 GB
# The log goes under $OUT as it is written: a call that runs out of time still returns what it printed.
bench() { python benchmarks/e2e/bench.py --shape llama3-8b --backend auto --keep-ratio 0.6 --cap-gib $CAP \
    --out "$CSV" "$@" 2>&1 | tee -a "$OUT/bench.log"; }
case "${1:?section}" in
overhead)
    # ${GPU_TESTS}: the kernel parity tests take three minutes (compiling); a call that ran them passes "memory".
    python -m pytest -q -m gpu ${GPU_TESTS:-tests/ops/test_ops_gpu.py tests/memory} 2>&1 | tail -5 \
        | tee "$OUT/test_gpu.log" || true
    bench --lengths 32768 --steps 3 --warmup 1 --budget-s 300 --configs exact exact+offload exact+offload+tiled \
        lemo-random+gc lemo+offload lemo+offload+tiled
    bench --lengths 131072 --steps 1 --warmup 1 --budget-s 200 --configs exact+offload+tiled lemo+offload+tiled
    ;;
pair)
    bench --lengths "${2:?T}" --steps 1 --warmup 0 --configs lemo+offload+tiled exact+offload+tiled
    ;;
one)
    name=${2:?config}
    shift 2
    for T in "$@"; do bench --lengths "$T" --steps 1 --warmup 0 --configs "$name"; done
    ;;
warm)
    [ -z "${GPU_TESTS:-}" ] || python -m pytest -q -m gpu $GPU_TESTS 2>&1 | tail -5 | tee "$OUT/test_gpu.log" || true
    bench --lengths "${3:?T}" --steps 1 --warmup 1 --warmup-layers few --configs "${2:?config}"
    ;;
probe)
    name=${2:?config}
    shift 2
    python benchmarks/e2e/bench.py --mode longest --shape llama3-8b --backend auto --keep-ratio 0.6 --cap-gib $CAP \
        --configs "$name" --probe-lengths "$@" --steps 1 --warmup 0 --out "$OUT/e2e_llama3_8b_offload_longest.csv" \
        2>&1 | tee -a "$OUT/bench.log"
    ;;
*) echo "unknown section $1" >&2; exit 2 ;;
esac
free -g | tee "$OUT/host_memory.txt"
