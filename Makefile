# firewatch: `make run` and `make test` work on a fresh machine (they set up .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck pytest bench fmt clean venv test-deps lock lock-check

venv: $(STAMP)

# The bootstrap (uv + packaging) is all `make lock` needs, so the lock can be
# regenerated even when a new dependency conflicts with the current pins.
$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv packaging

# The locked runtime versions are constraints, so tests run what the image ships;
# the dev and embedded extras (not in the image) resolve freely around them.
$(STAMP): pyproject.toml requirements.lock | $(BIN)/uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev,embedded]' -c requirements.lock
	touch $(STAMP)

# requirements.lock: the runtime dependencies (no extras) with the hashes of every
# wheel and sdist, for all platforms (the image is CPython 3.12 on musl; dev is
# CPython >= 3.11, the lower bound of requires-python). Run after changing
# [project.dependencies]; existing pins are kept unless UPGRADE=1.
lock: | $(BIN)/uv
	$(BIN)/uv pip compile pyproject.toml --quiet --universal --python-version 3.11 \
		--generate-hashes --custom-compile-command 'make lock' \
		$(if $(UPGRADE),--upgrade) -o requirements.lock
	$(BIN)/python -m scripts.lockfile stamp

lock-check: | $(BIN)/uv
	$(BIN)/python -m scripts.lockfile check

run: venv
	$(BIN)/firewatch serve

lint: venv
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy --strict src tests bench scripts

test-deps:
	bash scripts/test-deps.sh

pytest: venv test-deps
	$(BIN)/pytest -n 2 --dist loadfile

test: lock-check lint pytest

bench: venv
	$(BIN)/python -m bench.run

fmt: venv
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
