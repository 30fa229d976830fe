#!/usr/bin/env bash
# The GPU runs of issue 9 (capability), one section per device call (each must finish within 10 minutes).
#   bash benchmarks/device/gpu_capability.sh stage     # first half of the SmolLM2 GGUF (.stage/a) to /root/stage
#   bash benchmarks/device/gpu_capability.sh quality   # second half (.stage/b), Austen (.stage/austen): capability
#   bash benchmarks/device/gpu_capability.sh speed     # Llama-3-8B step time of the selections against exact
#   bash benchmarks/device/gpu_capability.sh suite     # after `stage`: the capability suite (docs/suite.md), resumable:
#                                                      # carry .stage/suite_parts.tar from the last call's $OUT
# Needs LEMO_COMMIT and OUT. The 94 MiB GGUF is above what one call carries, hence the two halves.
set -euo pipefail
# gguf (to read the model) travels as a wheel in .whl: nothing can be installed from the network there.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=src:/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
OUT=${OUT:?set OUT}
S=/root/stage
mkdir -p "$OUT" "$S"
export LEMO_SMOLLM2_GGUF=$S/smollm2.gguf LEMO_AUSTEN_DIR=$S/austen
CONFIGS=${CONFIGS:-base dense dense@36 dense@42 dense@48 dense@54 preset prio-oracle prio-mix prio-random random \
longlora text:dense text:dense@48 text:preset text:random}
assemble() {  # the GGUF from its halves (part00 staged by `stage`, part01 carried), and Austen, once per machine
    if [ ! -f "$LEMO_SMOLLM2_GGUF" ]; then
        cat "$S/part00" .stage/b/part01 > "$LEMO_SMOLLM2_GGUF"
        cp -r .stage/austen "$S/austen"
    fi
    echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $LEMO_SMOLLM2_GGUF" | sha256sum -c
}
case "${1:?section}" in
stage)
    cp .stage/a/part00 "$S/"
    ;;
quality)
    assemble
    if [ "${BIAS:-1}" = 1 ]; then
        python benchmarks/quality/capability.py --bias --bias-rows 8 --work /root/cap \
            --out "$OUT/selection_bias.csv" 2>"$OUT/bias.err"
    fi
    # shellcheck disable=SC2086
    python benchmarks/quality/capability.py --configs $CONFIGS --samples ${SAMPLES:-20} --workers ${WORKERS:-4} \
        --work /root/cap --out "$OUT/capability_smollm2.csv" 2>"$OUT/quality.err"
    ;;
speed)
    python benchmarks/e2e/bench.py --shape llama3-8b --backend auto --keep-ratio 0.6 --lengths 16384 32768 \
        --configs exact lemo-shared+gc lemo-prio+gc lemo-mix+gc lemo-random+gc longlora+gc --completion 0.02 \
        --budget-s 420 --out "$OUT/e2e_llama3_8b_capability.csv"
    python benchmarks/e2e/bench.py --shape llama3-8b --backend auto --keep-ratio 0.6 --lengths 32768 \
        --configs exact lemo-random+gc --budget-s 120 --out "$OUT/e2e_llama3_8b_capability.csv"
    ;;
suite)
    # configs x forms x seeds, 8 trainings at a time; no job starts that would end after BUDGET_S. A call returns
    # at most 8 files, so the finished jobs' part files come back packed in $OUT/suite_parts.tar: carry it as
    # .stage/suite_parts.tar (or unpacked, as .stage/suite_parts/) and run again to resume.
    assemble
    P=/root/suite_parts
    python benchmarks/quality/suite_parts.py unpack "$P" .stage/suite_parts.tar .stage/suite_parts
    # dense@N come from the dense jobs themselves (snapshots): equal-GPU-time baselines for step-time ratios 0.8 and
    # 0.87 cost one evaluation each.
    SUITE_CONFIGS=${SUITE_CONFIGS:-dense dense@48 dense@52 default backward-gradient backward-supervision oracle}
    rc=0
    # shellcheck disable=SC2086
    # The runner is stopped at SUITE_TIMEOUT so that the packing below runs even if a job overruns the call.
    timeout "${SUITE_TIMEOUT:-560}" python benchmarks/quality/suite.py --configs $SUITE_CONFIGS --forms ${FORMS:-sup text} --seeds ${SEEDS:-0 1 2} \
        --workers ${WORKERS:-8} --budget-s ${BUDGET_S:-540} ${SUITE_ARGS:-} --work /root/suite --parts "$P" \
        --out "$OUT/suite_smollm2.csv" 2>"$OUT/suite.err" || rc=$?
    # Packed even when the runner failed: what finished before the failure still comes back.
    python benchmarks/quality/suite_parts.py pack "$P" "$OUT/suite_parts.tar"
    exit $rc
    ;;
*) echo "unknown section $1" >&2; exit 2 ;;
esac
