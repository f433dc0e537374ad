# firewatch: `make run` and `make test` work on a fresh machine (they set up .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: eval run test lint typecheck pytest bench fmt clean venv test-deps lock lock-check policy

venv: $(STAMP)

# The bootstrap (uv + packaging) is all `make lock` needs, so the lock can be
# regenerated even when a new dependency conflicts with the current pins. uv is
# pinned so that `make lock` writes the same file everywhere (CI checks for drift).
$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check 'uv==0.13.9' packaging

# The locked runtime versions are constraints, so tests run what the image ships;
# the dev and embedded extras (not in the image) resolve freely around them.
$(STAMP): pyproject.toml requirements.lock | $(BIN)/uv
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev,embedded]' -c requirements.lock
	touch $(STAMP)

# requirements.lock: the runtime dependencies (no extras) with the hashes of every
# wheel and sdist, for all platforms (the image is CPython 3.12 on musl; dev is
# CPython >= 3.11, the lower bound of requires-python). requirements-build.lock: the
# image builder's tools, with numpy/scipy held to the runtime pins. Run after
# changing [project.dependencies]; existing pins are kept unless UPGRADE=1.
LOCK_FLAGS = --quiet --universal --generate-hashes --custom-compile-command 'make lock' \
	$(if $(UPGRADE),--upgrade)
lock: | $(BIN)/uv
	$(BIN)/uv pip compile pyproject.toml $(LOCK_FLAGS) --python-version 3.11 -o requirements.lock
	$(BIN)/uv pip compile requirements-build.in $(LOCK_FLAGS) --python-version 3.12 \
		-c requirements.lock -o requirements-build.lock
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

# Image and pipeline checks (ADR-003); no Docker engine needed. The musl check asks
# PyPI (pip's HTTP cache lives in .cache/pip-musl).
SHELL_SCRIPTS = $(shell git ls-files --cached --others --exclude-standard '*.sh' .ci/run)
policy: venv test-deps
	$(BIN)/hadolint Dockerfile
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
	$(BIN)/zizmor --offline --no-progress .github
	shellcheck $(SHELL_SCRIPTS)
	$(BIN)/bandit --quiet -c pyproject.toml -r src
	$(BIN)/python -m scripts.musl_check
	$(BIN)/pytest -q tests/image/test_dockerfile_policy.py \
		tests/image/test_trivyignore.py tests/image/test_lock.py

test: lock-check lint policy pytest

# make bench BENCH=incidents,keyset  (scenarios; see bench/README.md) BENCH_ARGS='--rounds 5'
BENCH ?=
BENCH_ARGS ?=
# Detector vs rolling z-score baseline and similar-incident recall@5 on generated,
# seeded data; rewrites the measured block of docs/model-card.md.
eval: venv
	$(BIN)/python -m firewatch.detection.evaluation --write docs/model-card.md

bench: venv
	$(BIN)/python -m bench.run $(BENCH) $(BENCH_ARGS)

fmt: venv
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
