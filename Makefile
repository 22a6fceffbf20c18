# Two commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench install install-test clean-demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test]"
	# capparselib's own pins do not build on Python 3.11; its needs (lxml, python-dateutil) come with the extras
	$(BIN)/pip install -q --no-deps "capparselib==0.6.6"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## Install and run the demo (Lâm Đồng, embedded SQLite, http://127.0.0.1:8000)
demo: install
	$(BIN)/saola demo

## Install the test extras and run the whole test suite (lint, import rules, pytest on SQLite and PostgreSQL)
test: install-test
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/pytest

## Run the benchmarks at full size and update docs/benchmarks.md
bench: install-test
	$(BIN)/python -m benchmarks.ingest_observations

clean-demo:
	rm -rf saola-data
