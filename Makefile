# Two commands: `make run` (dashboard on the embedded data) and `make test`.
# Everything else is set up on the way: virtualenv, pinned dependencies, embedded database.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCK_STAMP := $(VENV)/.locked-stamp
# Every package, transitive ones included, pinned with its hashes: `make lock` rewrites it from pyproject.toml.
LOCK := requirements.lock
PIP_VERSION := $(shell sed -n 's/^pip==\([^ ]*\).*/\1/p' $(LOCK))
DB := data/essmap.duckdb
DEMO_INPUTS := $(wildcard data/geo/* data/raw/*) $(wildcard essmap/demo/*.py essmap/domain/*.py essmap/geo/*.py essmap/io/readers/*.py essmap/io/readers/*/*.py essmap/store/*.py)
PORT ?= 8501
# axe-core (npm registry, pinned), injected into the dashboard by tests/browser/test_accessibility.py
# (which reads AXE_VERSION here); installed by the setup so that the tests need no network.
AXE_VERSION := 4.14.1
AXE := .cache/axe-$(AXE_VERSION)/node_modules/axe-core/axe.min.js

.PHONY: run test test-unit fuzz build bench clean setup system-deps lint lock axe screenshots

setup: $(STAMP)

# The locked stack, every file checked against its hash.
$(LOCK_STAMP): $(LOCK)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	touch $(LOCK_STAMP)

# essmap itself, built with the locked setuptools; pip check fails when pyproject.toml asks for
# something the lock does not hold.
$(STAMP): pyproject.toml $(LOCK_STAMP)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check || { echo "$(LOCK) does not match pyproject.toml: run make lock" >&2; exit 1; }
	touch $(STAMP)

# Rewrite the lock after a change of pyproject.toml; pins already there are kept unless
# `make lock PIP_COMPILE_ARGS=--upgrade` (or --upgrade-package NAME).
lock: $(LOCK_STAMP)
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --extra dev --all-build-deps \
		--no-emit-index-url --no-emit-find-links $(PIP_COMPILE_ARGS) --output-file $(LOCK) pyproject.toml

$(DB): $(STAMP) $(DEMO_INPUTS)
	$(BIN)/essmap build --db $(DB)

build: $(DB)

# serve/launch.py imports the dashboard's stack, then runs `streamlit run app.py`: the port opens (and the
# URL shows) only then, so no visitor waits for the imports. serve/warm.py runs the app once on the
# default view as soon as the server answers: its data and map are then in the caches too.
run: $(DB)
	$(BIN)/python serve/warm.py --port $(PORT) & \
	exec $(BIN)/python serve/launch.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

# PNG screenshots of the dashboard (map, radius tab, fiche, phone) and of a portrait page for the README,
# from the embedded data, in docs/screenshots/ (chromium and pdftoppm from system-deps).
screenshots: $(DB) system-deps
	$(BIN)/python docs/make_screenshots.py

system-deps:
	bash .ci/system-deps.sh

# One folder per version: a new AXE_VERSION installs next to the old one.
$(AXE): | system-deps
	npm install --prefix .cache/axe-$(AXE_VERSION) --no-save --no-audit --no-fund --silent axe-core@$(AXE_VERSION)
	test -f $(AXE)

axe: $(AXE)

# The tests run in parallel with pytest-xdist, one worker per CPU (on 2 idle cores: 9 min instead of
# 13.5), the browser tests in two groups (tests/conftest.py); `make test PYTEST_WORKERS=` runs them in
# one process, `PYTEST_WORKERS=4` in four workers.
PYTEST_WORKERS ?= auto
PYTEST_PARALLEL = $(if $(PYTEST_WORKERS),-n $(PYTEST_WORKERS) --dist loadgroup)

test: $(STAMP) $(DB) system-deps $(AXE)
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# The tests that need no Debian package (no chromium, no poppler-utils), start no Streamlit server, kernel or
# other interpreter and take seconds, not tens of seconds (marker slow: those run in `make test`
# only); markers in pyproject.toml.
# `make test-unit PYTEST_ARGS=--durations=15` lists the slowest.
test-unit: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m "not browser and not poppler and not slow" $(PYTEST_ARGS)

# The fault-injection and fuzz suite (tests/fuzz) with many more Hypothesis examples than `make test`
# runs (profile "fuzz" in tests/fuzz/conftest.py; still derandomized, so a failure reproduces).
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest tests/fuzz $(PYTEST_ARGS)

# ruff (rules and line length in pyproject.toml) on the whole tree, mypy on the package; both
# always run, and either failing fails the target.
lint: $(STAMP)
	status=0; $(BIN)/ruff check . || status=1; $(BIN)/mypy || status=1; exit $$status

clean:
	rm -rf $(VENV) $(DB) data/essmap.duckdb.* .pytest_cache .cache/axe-*

# --- Benchmarks (how to run: top of bench/RESULTS.md) ------------------------------------------
# `make bench`: the issue's benchmark table on a national-scale store built with the real CLI (cached in
# bench/out/), CLI cases, point in polygon against the libraries and PostGIS, the dashboard in chromium;
# rewrites bench/RESULTS.md. Options through BENCH_ARGS, e.g. `make bench BENCH_ARGS="--skip-postgis
# --skip-browser"` (`.venv/bin/python bench/run.py --help`). `make bench-small`: smoke run on small data
# (bench/out/RESULTS-small.md). `make bench-browser`: the browser part alone (the rest keeps its figures);
# `make bench-sessions`: the same concurrency cases with protocol clients, no browser (the server alone).
# PostgreSQL + PostGIS come from Debian (bench/install-system-deps.sh, a no-op when present); the
# harness starts its own throw-away cluster with the /usr/lib/postgresql/<major>/bin binaries.
BENCH_STAMP := $(VENV)/.bench-stamp
BENCH_ARGS ?=

.PHONY: bench-small bench-deps bench-browser bench-sessions

$(BENCH_STAMP): $(STAMP) bench/requirements.txt
	$(BIN)/pip install --quiet -r bench/requirements.txt
	touch $(BENCH_STAMP)

bench-deps: $(BENCH_STAMP)
	@bash bench/install-system-deps.sh || echo "bench: PostgreSQL/PostGIS could not be installed; the PostGIS recipe will be reported as missing." >&2

bench: $(STAMP) bench-deps system-deps
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-small: $(STAMP) bench-deps system-deps
	$(BIN)/python bench/run.py --small $(BENCH_ARGS)

bench-browser: $(STAMP) bench-deps system-deps
	$(BIN)/python bench/run.py --only browser $(BENCH_ARGS)

bench-sessions: $(STAMP) bench-deps
	$(BIN)/python bench/run.py --only sessions $(BENCH_ARGS)

# --- Several users: `make serve REPLICAS=4` -----------------------------------------------------
# REPLICAS Streamlit processes (local ports REPLICA_PORT, REPLICA_PORT+1...) on the same read-only
# store, behind Debian's nginx on PORT with sticky sessions; Ctrl-C stops them all. SERVE_ARGS passes
# more options (`.venv/bin/python serve/run.py --help`), e.g. the replicas of other machines.
REPLICAS ?= 2
REPLICA_PORT ?= 8601
SERVE_ARGS ?=

.PHONY: serve

serve: $(DB)
	$(BIN)/python serve/run.py --replicas $(REPLICAS) --port $(PORT) --replica-port $(REPLICA_PORT) $(SERVE_ARGS)
