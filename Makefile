# Two entry points for a fresh machine: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-workspace
DEMO_USERS ?= 5000
DEMO_DAYS ?= 365

.PHONY: demo test lint venv dev clean bench

$(BIN)/tenure: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev: $(BIN)/tenure
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/tenure
dev: $(VENV)/.dev

demo: $(BIN)/tenure
	$(BIN)/tenure demo $(DEMO_DIR) --users $(DEMO_USERS) --days $(DEMO_DAYS)

test: lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

bench: $(VENV)/.dev
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
