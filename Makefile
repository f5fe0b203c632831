# One-command entry points; each sets up the virtualenv first if needed.
PYTHON ?= python3
VENV ?= .venv
# The optional dependencies installed with the project; the image installs deploy (deploy/Dockerfile).
EXTRAS ?= dev
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home

.PHONY: setup demo test browser deploy-test lint ui bench clean

$(BIN)/kpi-pipeline: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

setup: $(BIN)/kpi-pipeline

$(DAGSTER_HOME):
	mkdir -p $@
	touch $@/dagster.yaml

demo: setup $(DAGSTER_HOME)  ## generate the sample data (if absent), materialize every asset, print KPIs
	$(BIN)/kpi-pipeline demo

test: setup  ## run the whole test suite, the browser tests with it (skipped without chromium)
	$(BIN)/pytest -q

browser: setup  ## only the browser tests: the Dagster UI and the KPI report in Debian's headless chromium
	$(BIN)/pytest -q -n 0 browser_tests

deploy-test: setup  ## the deployment files, the PostgreSQL topology of docs/deploy.md and the data root in S3 (moto; needs KPI_TEST_POSTGRES_URL)
	$(BIN)/python -c "import dagster_docker, dagster_k8s" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[dev,deploy]"
	$(BIN)/pytest -q -s -n 0 deploy_tests

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

ui: setup $(DAGSTER_HOME)  ## the Dagster UI (and daemon) on the same data, http://127.0.0.1:3000
	$(BIN)/dagster dev -w workspace.yaml

bench: setup  ## every benchmark with its DuckDB floor, then one summary table (BENCH_10M=1: also 10M lines)
	$(BIN)/python benchmarks/run_all.py

clean:  ## remove generated data, staging files, the SQLite warehouse and run history
	rm -rf data/raw data/staging data/warehouse data/dagster_home
