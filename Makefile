# The two set-up commands: `make run` and `make test`. Both install into ./.venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DATA_DIR ?= .govplane
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint typecheck bench fuzz clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(INSTALLED)

install: $(INSTALLED)

run: install
	$(BIN)/govplane init --data-dir $(DATA_DIR)
	@echo "API and dashboard: http://$(HOST):$(PORT)/  (OpenAPI: http://$(HOST):$(PORT)/docs)"
	$(BIN)/govplane serve --data-dir $(DATA_DIR) --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

# The long fuzzing profile (the fast one runs in `make test`).
fuzz: install
	GOVPLANE_FUZZ=long $(BIN)/pytest tests/fuzz -o timeout=3600

bench: install
	$(BIN)/python bench

clean:
	rm -rf $(VENV) $(DATA_DIR) .mypy_cache .pytest_cache .ruff_cache
