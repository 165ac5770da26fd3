PY ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin
# the demo needs only the base install; tests, lint and benchmarks add the dev tools
BASE = $(VENV)/.installed-base
STAMP = $(VENV)/.installed

.PHONY: demo test lint bench install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(BASE): $(BIN)/python pyproject.toml setup.py src/chronoml/_digests.c
	$(BIN)/pip install --quiet -e .
	touch $(BASE)

$(STAMP): $(BASE)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(BASE)
	MLFLOW_DISABLE_TELEMETRY=true $(BIN)/chronoml demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .chronoml .pytest_cache .mypy_cache .ruff_cache
