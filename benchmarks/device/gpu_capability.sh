#!/usr/bin/env bash
# The GPU runs of issue 9 (capability), one section per device call (each must finish within 10 minutes).
#   bash benchmarks/device/gpu_capability.sh stage     # the carried quarter of the SmolLM2 GGUF (.stage/a, then
#                                                      # .stage/b, .stage/c, one a call) to /root/stage
#   bash benchmarks/device/gpu_capability.sh quality   # last quarter (.stage/d), Austen (.stage/austen.tgz): capability
#   bash benchmarks/device/gpu_capability.sh speed     # Llama-3-8B step time of the selections against exact
#   bash benchmarks/device/gpu_capability.sh suite     # after `stage`: the capability suite (docs/suite.md), resumable:
#                                                      # carry .stage/suite_parts.tar from the last call's $OUT, or
#                                                      # name the committed CSV in SUITE_RESUME_CSV
#   bash benchmarks/device/gpu_capability.sh suite-forms  # the suite one form a call of `suite`, one deadline
#   bash benchmarks/device/gpu_capability.sh assemble  # with .stage/d, .stage/austen.tgz and .whl: the GGUF and
#                                                      # Austen, each if missing, before sections started at once
#   bash benchmarks/device/gpu_capability.sh join      # the GGUF only, installing no wheel
#   bash benchmarks/device/gpu_capability.sh sizing    # after `stage`: dense LoRA on every variant of
#                                                      # benchmarks/quality/suite_sizing.json, all at once
# Needs LEMO_COMMIT and OUT. The 94 MiB GGUF is above what one call carries (64 MiB, the tracked tree included:
# about 33 MB in session 36, when a third of the GGUF with the tree, Austen and the wheels went over), hence
# quarters of 24.6 MB, one a call (each within 30 s of the last, while the machine is warm), the call with
# .stage/d (and .stage/austen.tgz, .whl) starting the work. Made once with `split -d -a 2 -n 4 smollm2.gguf part`
# into .stage/a .. .stage/d (git-ignored through .git/info/exclude).
# LEMO_LOCAL=1 runs a section on a machine that already has the model and Austen (the lemo cache): no wheel, no
# staging; with small SEQ_LEN, STEPS, EVAL_LENGTHS and QUESTIONS, `sizing` runs end to end on a CPU.
set -euo pipefail
OUT=${OUT:?set OUT}
S=${LEMO_STAGE:-/root/stage}
SITE=${LEMO_SITE:-/tmp/site}  # where the carried wheels install (gpu_liger.sh installs Liger there too)
if [ -z "${LEMO_LOCAL:-}" ]; then
    # gguf (to read the model) travels as a wheel in .whl: nothing can be installed from the network there.
    # once a machine: sections started at once after `assemble` must not install into the same folder together;
    # `join` carries no wheel (its call is full)
    if [ "${1:-}" != join ] && [ ! -f "$SITE/.lemo-installed" ]; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl
        mkdir -p "$SITE" && touch "$SITE/.lemo-installed"
    fi
    mkdir -p "$S"
    export LEMO_SMOLLM2_GGUF=$S/smollm2.gguf LEMO_AUSTEN_DIR=$S/austen
fi
export PYTHONPATH=src:$SITE${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
mkdir -p "$OUT"
CONFIGS=${CONFIGS:-base dense dense@36 dense@42 dense@48 dense@54 preset prio-oracle prio-mix prio-random random \
longlora text:dense text:dense@48 text:preset text:random}
carried() {  # the GGUF's quarters this call carries (.stage/a .. .stage/d, one each), into the stage folder
    mkdir -p "$S"
    for part in .stage/*/part0[0-3]; do if [ -f "$part" ]; then cp "$part" "$S/"; fi; done
}
join() {  # the GGUF from its four quarters (three staged by earlier calls, the last carried), once a machine
    if [ ! -f "$LEMO_SMOLLM2_GGUF" ]; then
        carried
        local missing=""
        for i in 0 1 2 3; do [ -f "$S/part0$i" ] || missing="$missing part0$i"; done
        if [ -n "$missing" ]; then
            echo "join: missing$missing in $S: carry .stage/a .. .stage/d, one a call, each within 30 s" >&2
            exit 2
        fi
        cat "$S"/part0[0-3] > "$LEMO_SMOLLM2_GGUF.tmp" && mv "$LEMO_SMOLLM2_GGUF.tmp" "$LEMO_SMOLLM2_GGUF"
    fi
    echo "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  $LEMO_SMOLLM2_GGUF" | sha256sum -c
}
assemble() {  # the GGUF (join) and Austen, each once a machine, whichever a call carries
    if [ -n "${LEMO_LOCAL:-}" ]; then return; fi
    join
    if [ ! -d "$S/austen" ]; then
        # packed (.stage/austen.tgz): the folder is 4 MB, the archive 1.5
        if [ -f .stage/austen.tgz ]; then tar -xzf .stage/austen.tgz -C "$S"; else cp -r .stage/austen "$S/austen"; fi
    fi
}
case "${1:?section}" in
assemble)  # alone, before sections that run at once (each assembles only what is missing: they would race)
    assemble
    ;;
join)  # the GGUF alone, carrying no wheel
    join
    ;;
stage)
    carried  # whichever quarter this call carries
    ls -l "$S"
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
    # SUITE_TAG (e.g. "_v6") names this run's work folder, parts and output files, so two suites (two presets)
    # can run at once on one GPU, each with its own WORKERS.
    assemble
    T=${SUITE_TAG:-}
    P=/root/suite_parts$T
    # SUITE_RESUME_CSV: a committed suite CSV (its rows are the part files'), to resume from a fresh checkout
    # shellcheck disable=SC2086
    python benchmarks/quality/suite_parts.py unpack "$P" ".stage/suite_parts$T.tar" ".stage/suite_parts$T" \
        ${SUITE_RESUME_CSV:-}
    # dense@N come from the dense jobs themselves (snapshots): equal-GPU-time baselines for step-time ratios 0.8 and
    # 0.87 cost one evaluation each.
    SUITE_CONFIGS=${SUITE_CONFIGS:-dense dense@48 dense@52 default backward-gradient backward-supervision oracle}
    rc=0
    # The runner is stopped at SUITE_TIMEOUT so that the packing below runs even if a job overruns the call.
    # SUITE_JSON: SuiteConfig knobs as one JSON word (e.g. '{"train_phrasings": 6}'); SUITE_ARGS: other flags.
    # shellcheck disable=SC2086
    timeout "${SUITE_TIMEOUT:-560}" python benchmarks/quality/suite.py --configs $SUITE_CONFIGS \
        --forms ${FORMS:-sup text} --seeds ${SEEDS:-0 1 2} --workers ${WORKERS:-8} --budget-s ${BUDGET_S:-540} \
        ${SUITE_JSON:+--suite "$SUITE_JSON"} ${SUITE_ARGS:-} --work "/root/suite$T" --parts "$P" \
        --out "$OUT/suite_smollm2$T.csv" 2>>"$OUT/suite$T.err" || rc=$?
    # Packed even when the runner failed: what finished before the failure still comes back.
    python benchmarks/quality/suite_parts.py pack "$P" "$OUT/suite_parts$T.tar"
    exit $rc
    ;;
suite-forms)
    # The suite one form at a time, sharing one deadline (DEADLINE seconds from now), each form with its own
    # configs (SUP_CONFIGS, TEXT_CONFIGS: its own equal-GPU-time snapshot only) and the same SUITE_TAG, so one
    # parts folder and one CSV. The first form launches every job (stopped at the deadline); the second launches
    # only jobs that end before it, estimated from the first form's parts. Each form's parts come back packed.
    end=$(($(date +%s) + ${DEADLINE:?set DEADLINE, in seconds}))
    : "${SUP_CONFIGS:?set SUP_CONFIGS, the configs of the sup form}" "${TEXT_CONFIGS:?set TEXT_CONFIGS, the configs of the text form}"
    budget=0  # the first form: no estimate yet that could refuse a job
    rc=0
    for form in sup text; do
        left=$((end - $(date +%s)))
        if [ "$left" -lt 120 ]; then echo "suite-forms: ${left} s left, $form not started"; break; fi
        cfg=SUP_CONFIGS; [ "$form" = text ] && cfg=TEXT_CONFIGS
        FORMS=$form SUITE_CONFIGS=${!cfg} BUDGET_S=$budget SUITE_TIMEOUT=$left bash "$0" suite || rc=$?
        budget=$((end - $(date +%s)))
    done
    exit $rc
    ;;
sizing)
    # One suite.py per variant of $SIZING (name -> knobs over v2, optional "seeds"), dense LoRA in form sup, every
    # variant's jobs at once on the one GPU (12 jobs by default), each with its own data, parts and CSVs. A call
    # returns at most 8 files: the CSVs, summaries, plots and logs come back packed in $OUT/sizing.tar, and the
    # table of exact match and token accuracy per variant and family is printed (and kept in sizing_table.txt).
    assemble
    SIZING=${SIZING:-benchmarks/quality/suite_sizing.json}
    SEQ_LEN=${SEQ_LEN:-16384} STEPS=${STEPS:-60} EVAL_LENGTHS=${EVAL_LENGTHS:-16384 4096}
    W=${SIZING_WORK:-/root/sizing} R=$OUT/sizing
    rm -rf "$R" && mkdir -p "$R" "$W"
    python benchmarks/quality/suite.py sizing plan "$SIZING" > "$W/plan.tsv"  # refuses a bad variant up front
    pids=() names=()
    while IFS=$'\t' read -r name knobs seeds; do
        n=$(wc -w <<< "$seeds")
        # Every variant stops at the same deadline, so the packing below always runs within the call.
        # shellcheck disable=SC2086
        timeout -k 10 "${SIZING_TIMEOUT:-550}" python benchmarks/quality/suite.py --configs dense --forms sup \
            --seeds $seeds --workers "$n" --suite "$knobs" --seq-len "$SEQ_LEN" --steps "$STEPS" \
            --rows "${ROWS:-$STEPS}" --eval-lengths $EVAL_LENGTHS --questions "${QUESTIONS:-32}" \
            --ppl-lengths ${PPL_LENGTHS:-$SEQ_LEN} --budget-s "${BUDGET_S:-530}" ${SIZING_ARGS:-} \
            --work "$W/$name" --parts "$W/$name/parts" --out "$R/$name.csv" \
            < /dev/null > "$R/$name.log" 2> "$R/$name.err" &
        pids+=("$!") names+=("$name")
    done < "$W/plan.tsv"
    rc=0
    for i in "${!pids[@]}"; do
        code=0 && wait "${pids[$i]}" || code=$?
        echo "${names[$i]}: exit $code, $(find "$W/${names[$i]}/parts" -name '*.csv' 2>/dev/null | wc -l) jobs done"
        [ "$code" = 0 ] || rc=$code
        # The report again from the parts: a runner stopped by the timeout may have missed the last job's.
        python benchmarks/quality/suite_report.py "$W/${names[$i]}/parts" --out "$R/${names[$i]}.csv" || true
    done
    # shellcheck disable=SC2086
    python benchmarks/quality/suite.py sizing table "$R" --plan "$SIZING" --lengths $EVAL_LENGTHS \
        | tee "$OUT/sizing_table.txt"
    # The knobs for the suite call that follows on this machine: SUITE_JSON=$(cat /root/sizing/chosen.json).
    python benchmarks/quality/suite.py sizing choose "$R" --plan "$SIZING" > "$W/chosen.json" \
        && cp "$W/chosen.json" "$R/" && echo "chosen: $(cat "$W/chosen.json")" || true
    tar -cf "$OUT/sizing.tar" -C "$OUT" sizing && rm -rf "$R"
    exit $rc
    ;;
*) echo "unknown section $1" >&2; exit 2 ;;
esac
