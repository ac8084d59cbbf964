# lunarhub: `make up` starts the whole stack on this machine; `make test` runs every test.
# Everything lands in .venv (pip) and node_modules (npm); Debian packages via apt-get when root.
SHELL := /bin/bash
PY_BASE ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
APT_RUNTIME := nginx-light gdal-bin nftables slurm-wlm munge sudo prometheus prometheus-node-exporter acl
APT_TEST := chromium fonts-noto-cjk
CONFIG ?= hub/lunarhub.yaml

.PHONY: install install-test up down status test test-fast lint typecheck bench clean-state

# The user servers run as their own system accounts, so the checkout and the venv
# must be enterable by them: a venv made from Debian's /usr/bin/python3 (the default
# Python under /root is closed to other accounts).
$(BIN)/python:
	$(PY_BASE) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

# Our JupyterLab extension, built from its TypeScript source at install (npm packages pinned by
# its yarn.lock; nothing is fetched at run time): extensions/lunarhub-lab/README.md.
LAB_EXT := extensions/lunarhub-lab
$(VENV)/.installed-lab: $(VENV)/.installed $(addprefix $(LAB_EXT)/,package.json yarn.lock pyproject.toml tsconfig.json) \
		$(wildcard $(LAB_EXT)/src/*.ts $(LAB_EXT)/style/* $(LAB_EXT)/lunarhub_lab/*.py \
		$(LAB_EXT)/lunarhub_lab/locale/*/LC_MESSAGES/*.json $(LAB_EXT)/jupyter-config/*/*.json)
	$(BIN)/pip install -q ./$(LAB_EXT)
	touch $@

node_modules/.bin/configurable-http-proxy: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

install: $(VENV)/.installed $(VENV)/.installed-lab node_modules/.bin/configurable-http-proxy
	@scripts/system-deps.sh $(APT_RUNTIME)
	@scripts/open-path.sh "$(CURDIR)"

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install-test: install $(VENV)/.installed-test
	@scripts/system-deps.sh $(APT_TEST)

up: install
	$(BIN)/lunarhub --config $(CONFIG) up

down:
	@test -x $(BIN)/lunarhub && $(BIN)/lunarhub --config $(CONFIG) down || echo "lunarhub is not installed"

status:
	$(BIN)/lunarhub --config $(CONFIG) status

lint: install-test
	$(BIN)/ruff check lunarhub tests benchmarks hub

# What to check and how strictly: [tool.mypy] in pyproject.toml.
typecheck: install-test
	$(BIN)/mypy

test: install-test lint typecheck
	$(BIN)/python -m pytest -v -rfE --durations=15 tests

bench: install-test
	$(BIN)/python benchmarks/run.py
