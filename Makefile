# Set-up and the two everyday commands. Everything installs into ./.venv.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
# pytest-xdist workers for `make test` (the suite's tests run single-threaded; a file's tests stay on one worker)
# (--durations: the slowest tests in every log, to keep the suite under its 15 minutes on 2 cores)
TEST_WORKERS ?= 2

.PHONY: setup quickstart test lint clean gpu-check

setup: $(VENV)/.installed

# torch first (the pinned build), then the project with its dev extras
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

quickstart: setup
	$(PY) train.py experiment=quickstart

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# The GPU check of docs/gpu.md (no set-up: the GPU machine has its own Python; .whl/ from scripts/build_gpu_wheels.sh).
# Dry run on CPU: make gpu-check PYTHON=.venv/bin/python GPU_CHECK_ARGS="--device cpu --quick"
gpu-check:
	PYTHON=$(or $(PYTHON),python3) bash scripts/gpu_check.sh $(GPU_CHECK_ARGS)

clean:
	rm -rf outputs multirun comparisons .cache .pytest_cache build dist
