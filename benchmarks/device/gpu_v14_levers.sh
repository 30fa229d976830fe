#!/usr/bin/env bash
# The v14 call of docs/suite.md ("Next on v14"), detached on a warm machine whose GGUF is assembled:
#   1. the step of lemo's default at keep 0.6 on Liger, against Liger exact in the same run (16K, 32K; the
#      Llama-3-8B shape, random init), appended to $OUT/e2e_llama3_8b_liger.csv;
#   2. seeds 3-5 of the prompt/completion suite (dense with its snapshots, keep 0.6, the default, the oracle: 12
#      jobs, one wave of 12 workers on an H200; each snapshot adds an evaluation of about 90 s to the dense job,
#      the longest), then the plain-text form (the 15% dense tail for the perplexity target) as the time left
#      allows, resumed from the committed v14 CSV.
#   END=<epoch s by which the suite must stop> LEMO_COMMIT=<sha> OUT=<dir> bash benchmarks/device/gpu_v14_levers.sh
# SEEDS, SUP_CONFIGS, TEXT_CONFIGS, SHORT_KEEPS, SHORT_KEEP_LENGTHS and COMPLETION replace the defaults below:
# session 36 ran it on an H100 with SUP_CONFIGS="dense dense@91 dense@93 copy3-keep60" (one wave of 7 workers);
# docs/suite.md ("Next on v14") has the next call's settings.
# Started through gpu_detached.sh after `gpu_capability.sh assemble` (its header: the staging of the GGUF).
set -euo pipefail
: "${END:?set END, the epoch second by which the suite must stop}" "${LEMO_COMMIT:?set LEMO_COMMIT}" "${OUT:?set OUT}"
export LEMO_COMMIT OUT
# COMPLETION=0 times plain-text rows (gpu_liger.sh's setting; 2% labelled by default)
SHORT_CONFIGS=liger-exact SHORT_KEEPS="${SHORT_KEEPS:-0.6}" SHORT_KEEP_LENGTHS="${SHORT_KEEP_LENGTHS:-16384 32768}" LONG= \
    bash benchmarks/device/gpu_liger.sh || echo "speed part failed: $?"
SUITE_RESUME_CSV=benchmarks/results/suite_v14_smollm2.csv SUITE_JSON='{"preset": "v14"}' SUITE_TAG=_v14 \
    SEEDS="${SEEDS:-3 4 5}" WORKERS="${WORKERS:-12}" DEADLINE=$((END - $(date +%s))) \
    SUP_CONFIGS="${SUP_CONFIGS:-dense dense@84 dense@91 copy3-keep60 default oracle-default}" \
    TEXT_CONFIGS="${TEXT_CONFIGS:-dense dense@87 dense@89 copy3-tail15 default}" \
    SUITE_ARGS="--steps 120 --rows 120 --eval-lengths 16384" \
    bash benchmarks/device/gpu_capability.sh suite-forms
