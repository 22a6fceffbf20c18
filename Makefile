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

## Run every benchmark at full size and update docs/benchmarks.md (each also runs alone: python -m benchmarks.<name>)
bench: install-test
	$(BIN)/python -m benchmarks.ingest_observations
	$(BIN)/python -m benchmarks.rest_ingest
	$(BIN)/python -m benchmarks.mqtt_stream
	$(BIN)/python -m benchmarks.ngsi_ld_upsert
	$(BIN)/python -m benchmarks.sensorthings_create
	$(BIN)/python -m benchmarks.rules_ingest
	$(BIN)/python -m benchmarks.alert_latency
	$(BIN)/python -m benchmarks.land_lookup
	$(BIN)/python -m benchmarks.environment_aqi
	$(BIN)/python -m benchmarks.wallboard
	$(BIN)/python -m benchmarks.citizen_reports

clean-demo:
	rm -rf saola-data
