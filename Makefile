# One entry point for newcomers and CI alike: `make test` sets everything up and runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-unit test-db bench lint typecheck generated unasync clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## demo: set up, then play a scripted conversation on an embedded PostgreSQL (no config needed)
demo: setup
	$(BIN)/python -m demo

## test: set up the virtualenv, then run lint, type checks, the generated-code check and all
## tests (unit + database)
test: setup lint typecheck generated
	$(BIN)/python -m pytest

test-unit: setup
	$(BIN)/python -m pytest tests/unit

test-db: setup
	$(BIN)/python -m pytest tests/db

## bench: latency, throughput, round trips and contention on the direct Postgres backend
bench: setup
	$(BIN)/python -m benchmarks.run

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

## generated: fail if agent_engine/_sync/ is not what tools/unasync.py makes of _async/
generated: setup
	$(BIN)/python tools/unasync.py --check

## unasync: write agent_engine/_sync/ from agent_engine/_async/ (after editing the async source)
unasync: setup
	$(BIN)/python tools/unasync.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
