# Developer entry points. `make test` is what CI runs (see .ci/run).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint demo bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## install: create .venv with the provider (editable) and the test tools, pinned by constraints.txt
install: $(STAMP)

## test: run the whole test suite
test: $(STAMP)
	$(BIN)/pytest

## lint: ruff (lint + format check) and mypy
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## demo: start the embedded AI-DOL server, run the example DAG in real Airflow, print the conversation ids
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## bench: install the bench extras, run the benchmarks, write docs/benchmarks.{md,json,png} (about 10 min)
bench: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .demo
