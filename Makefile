# Two commands do all the set-up:
#   make run    create .venv, install invbench, run `invbench run --suite resnet-shapes`
#   make test   create .venv, install invbench with its dev tools, run the tests
# `make gpu-check OUT=dir [PHASE=ops|levels]` runs the GPU checks with the python that has torch.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUITE  ?= resnet-shapes
ARGS   ?=
OUT    ?= results/gpu/check
PHASE  ?= all

.PHONY: setup run test lint gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv --system-site-packages $(VENV)

# torch is not pinned: a machine without it gets pip's default build (CUDA on Linux).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install torch
	$(BIN)/python -m pip install -e ".[dev,triton]"
	touch $@

setup: $(VENV)/.installed

run: setup
	$(BIN)/invbench run --suite $(SUITE) $(ARGS)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check invbench tests benchmarks tools
	$(BIN)/ruff format --check invbench tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/mypy tools
	$(BIN)/lint-imports

gpu-check:
	bash scripts/gpu-check.sh "$(OUT)" $(PHASE)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
