#!/usr/bin/env bash
# A run longer than one device call (10 minutes), such as one warm step at 512K (issue 20 item 4). The device
# kills what a command leaves running when it returns, except a process that started its own session (setsid),
# which runs on while the machine stays held (it is given back 30 s after a call returns, or after 30 minutes).
#   bash benchmarks/device/gpu_detached.sh start NAME COMMAND [ARGS...]   # launches COMMAND and returns at once
#   bash benchmarks/device/gpu_detached.sh wait NAME [SECONDS]            # until it ends or SECONDS pass (540)
# COMMAND runs from the repository root with OUT set to a folder of its own ($DETACHED_ROOT/NAME/out: the
# device empties $OUT before every call); `wait` copies that folder to this call's $OUT and prints the log's
# tail, and says "running" or the exit status. Chain the `wait` calls at once, or the machine goes back and
# the run with it. Example, lemo's default at 512K (about 640 s a step and 96 GiB of pinned host memory
# predicted, plan_long_steps.csv; LEMO_HOST_GIB because the machines' RAM starts small and grows as it is used,
# so MemAvailable reads low at first, device H200.md):
#   bash benchmarks/device/gpu_detached.sh start 512k env LEMO_COMMIT=<sha> LEMO_HOST_GIB=120 SHORT= LONG=524288 \
#       LONG_CONFIGS=liger-default+offload+tiled-attn DEADLINE=1500 bash benchmarks/device/gpu_liger.sh
#   bash benchmarks/device/gpu_detached.sh wait 512k 560     # then again until it prints "exit status"
# Session 17 (2ff4f59) fitted the 128K pair re-timing, 512K and a suite run into one session's 30 minutes this
# way: the first call started one detached `bash -c '<128K gpu_liger.sh>; <512K gpu_liger.sh>'` (DEADLINE=900,
# then 1500) and copied .stage/a/part00 to /root/stage while carrying .whl and .stage/a; the next `wait` call
# carried .stage/b, .stage/austen and .whl and assembled the GGUF; when the run ended, the warm machine ran
# gpu_capability.sh suite. The machine's start took about 190 s of device time; the detached run about 960 s.
set -euo pipefail
ROOT=${DETACHED_ROOT:-/root/detached}
mode=${1:?start or wait}
name=${2:?a name for the run}
shift 2
D=$ROOT/$name
case "$mode" in
start)
    [ "$#" -gt 0 ] || { echo "start needs a command" >&2; exit 2; }
    if [ -f "$D/pid" ] && [ ! -f "$D/rc" ] && kill -0 "$(cat "$D/pid")" 2>/dev/null; then
        echo "$name is already running (pid $(cat "$D/pid")); use: wait $name" >&2
        exit 2
    fi
    rm -rf "$D" && mkdir -p "$D/out"
    printf '%q ' "$@" > "$D/cmd"
    # setsid: a session of its own, so the device does not end it with this call; rc is written last.
    OUT=$D/out setsid bash -c 'bash -c "$(cat "$1/cmd")" > "$1/log" 2>&1; echo $? > "$1/rc"' _ "$D" \
        < /dev/null > /dev/null 2>&1 &
    echo $! > "$D/pid"
    sleep "${START_WAIT:-5}"
    echo "started $name: $(cat "$D/cmd")"
    tail -n 20 "$D/log" 2>/dev/null || true
    ;;
wait)
    [ -d "$D" ] || { echo "no run named $name under $ROOT (start it first)" >&2; exit 2; }
    limit=${1:-540}
    while [ ! -f "$D/rc" ] && [ "$SECONDS" -lt "$limit" ]; do sleep 2; done
    if [ -n "${OUT:-}" ]; then mkdir -p "$OUT" && cp -r "$D/out/." "$OUT/"; fi
    tail -n "${TAIL:-40}" "$D/log" 2>/dev/null || true
    if [ -f "$D/rc" ]; then echo "$name: exit status $(cat "$D/rc")"; else echo "$name: running after ${SECONDS}s"; fi
    ;;
*)
    echo "unknown mode $mode: start or wait" >&2
    exit 2
    ;;
esac
