# Quickstart targets: each works on a fresh clone by itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dllg-installed
LLAMACPP_STAMP := $(VENV)/.dllg-llamacpp

.PHONY: venv llamacpp sandbox chromium test demo lint bench clean

venv: $(STAMP)

# The llama.cpp backend: llama-cpp-python compiles from source (~10-17 min on 2 cores; pip keeps the wheel).
# Only the tests need it; the demo runs without it. Built for this CPU but without Intel AMX: llama.cpp's AMX
# matrix product crashes on Q4_K_M weights (its issue 20824); the flags are no-ops on CPUs without AMX.
llamacpp: $(LLAMACPP_STAMP)

NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
$(LLAMACPP_STAMP): $(STAMP)
	CMAKE_ARGS="$$CMAKE_ARGS '-DCMAKE_C_FLAGS=$(NO_AMX)' '-DCMAKE_CXX_FLAGS=$(NO_AMX)'" \
		$(PY) -m pip install --quiet -e '.[llamacpp]'
	touch $(LLAMACPP_STAMP)

# The code sandbox runs model-written programs under bubblewrap (Debian package `bubblewrap`).
sandbox:
	@command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; } \
		|| { echo "the code sandbox needs bubblewrap: sudo apt-get install bubblewrap"; exit 1; }

# The answer page's browser test runs Debian's chromium through Playwright (never Playwright's own download).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
		|| { echo "the browser test needs chromium: sudo apt-get install chromium"; exit 1; }

# torch goes first and pinned: the CPU wheel; an unpinned torch would pull GBs of CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: venv llamacpp sandbox chromium
	$(PY) -m ruff check src tests scripts
	$(PY) -m pytest -q

# The demo verifies the world's code answers in the sandbox: it needs bubblewrap as much as the tests do.
demo: venv sandbox
	$(VENV)/bin/dllg demo

bench: venv
	$(VENV)/bin/dllg bench decode

lint: venv
	$(PY) -m ruff check src tests scripts
	$(PY) -m ruff format --check src tests scripts

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
