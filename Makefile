# Two commands do all the set-up:
#   make run    create .venv, install invbench, run `invbench run --suite resnet-shapes`
#   make test   create .venv, install invbench with its dev tools, run the tests
# On a GPU machine, with the python that has torch (no virtual environment, no downloads):
#   make first-light OUT=dir                    correctness, the timer, a small timing slice (6 min)
#   make gpu-check [OUT=dir] [PHASE=tests|ops|levels]   the full check, 8 minutes a phase
# OUT is never inside the tree: first-light requires it, gpu-check defaults to one under /tmp.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUITE  ?= resnet-shapes
ARGS   ?=
OUT    ?=
PHASE  ?= all
# Test processes (pytest-xdist). Two keep a 2-core machine busy (the tests alone use about
# one core); TEST_JOBS=1 runs them in one process.
TEST_JOBS ?= 2

.PHONY: setup run test lint first-light gpu-check clean

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

# Tests marked `alone` time real work and judge it: they run afterwards, with no neighbour.
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --benchmark-disable -m "not alone"
	$(BIN)/python -m pytest -q --benchmark-disable -m alone

lint: setup
	$(BIN)/ruff check invbench tests benchmarks tools
	$(BIN)/ruff format --check invbench tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/mypy tools
	$(BIN)/lint-imports

first-light:
	@[ -n "$(OUT)" ] || { echo "make first-light: OUT=dir is required (a folder outside the tree)" >&2; exit 2; }
	bash scripts/first-light.sh "$(OUT)"

gpu-check:
	bash scripts/gpu-check.sh "$(OUT)" $(PHASE)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
