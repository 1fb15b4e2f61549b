# The two set-up commands: `make run` and `make test`. Both install into ./.venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
DATA_DIR ?= .govplane
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install run test lint typecheck chromium bench fuzz clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(INSTALLED)

install: $(INSTALLED)

# `govplane demo` initializes the data directory, serves it, walks the governed path and stays
# up until Ctrl-C.
run: install
	$(BIN)/govplane demo --data-dir $(DATA_DIR) --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# The browser tests drive Debian's chromium; install it where it is missing (CI runs as root).
chromium:
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y chromium)

test: lint typecheck chromium
	$(BIN)/pytest

# The long fuzzing profile (the fast one runs in `make test`).
fuzz: install
	GOVPLANE_FUZZ=long $(BIN)/pytest tests/fuzz -o timeout=3600

# `make bench BENCH="lineage training"` re-runs only those and keeps the others' rows.
bench: install
	$(BIN)/python bench $(BENCH)

clean:
	rm -rf $(VENV) $(DATA_DIR) .mypy_cache .pytest_cache .ruff_cache
