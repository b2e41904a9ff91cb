# Two commands: `make run` (dashboard on the embedded data) and `make test`.
# Everything else is set up on the way: virtualenv, pinned dependencies, embedded database.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DB := data/essmap.duckdb
DEMO_INPUTS := $(wildcard data/geo/* data/raw/*) $(wildcard essmap/*.py essmap/readers/*.py)
PORT ?= 8501

.PHONY: run test build bench clean setup

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(DB): $(STAMP) $(DEMO_INPUTS)
	$(BIN)/essmap build --db $(DB)

build: $(DB)

run: $(DB)
	$(BIN)/streamlit run app.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

test: $(STAMP) $(DB)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) $(DB) data/essmap.duckdb.* .pytest_cache
