# The README's two commands: `make run` (set up, then run the default sweep) and
# `make test` (set up, then run the tests). Both start with `make setup`.
# `make test` needs no SLURM: it runs every test except the real-SLURM ones (marker `cluster`); its
# browser test needs Chromium, which `make browser` (run by `make test`) installs as root.
# `make test-cluster` starts the single-node SLURM (root: it installs it with apt when missing, and
# starts the daemons) and runs those. .ci/run runs both.
# The sweep's tracking server for a cluster run: `make mlflow-server` (docs/cluster.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= $(shell nproc 2>/dev/null || echo 2)
SNAKEMAKE := $(BIN)/snakemake
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

MLFLOW_PORT ?= 5000
SERVER := $(BIN)/python -m kanlib.workflow.mlflow_server

LINT_PATHS := kanlib tests benchmarks workflow/scripts

.PHONY: setup run test browser lint format test-cluster slurm-start slurm-stop mlflow-server mlflow-server-status mlflow-server-stop \
	bench clean

setup: $(VENV)/.installed

# torch is pinned to the CPU build that lies on this machine's disk; everything else
# comes from pyproject.toml (editable install of kanlib).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test,lint]'
	touch $@

run: setup
	$(SNAKEMAKE) --cores $(CORES)
	$(SNAKEMAKE) --cores 1 --report report.html
	@echo "Report: $(CURDIR)/report.html"
	@echo "MLflow: $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db, then open (the runs, not the GenAI view):"
	@$(BIN)/python -m kanlib.workflow.tracking links "$${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}" 2>/dev/null \
		| sed 's/^/  /' || true

# ruff (lint, import order, formatting), import-linter (the package's layers: pyproject.toml's
# [tool.importlinter]), snakefmt, and Snakemake's own linter over the workflow
lint: setup
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/lint-imports --no-cache
	$(BIN)/snakefmt --check Snakefile workflow/rules
	bash .ci/snakemake-lint.sh $(SNAKEMAKE)

# rewrite the sources in the house style (what lint checks)
format: setup
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/snakefmt Snakefile workflow/rules

test: setup browser
	$(BIN)/python -m pytest -q -m "not cluster" --durations=15

test-cluster: setup slurm-start
	$(BIN)/python -m pytest -q -m cluster tests/cluster/test_cluster.py

# headless Chromium for tests/ui/test_mlflow_ui.py: apt-installs Debian's chromium when missing (root;
# without root it says how and the browser test fails, never skips)
browser:
	bash tests/ui/install_chromium.sh

# a single-node SLURM on this machine for test-cluster (idempotent); slurm-stop ends what it started
slurm-start:
	bash tests/cluster/start_slurm.sh

slurm-stop:
	bash tests/cluster/stop_slurm.sh

# one mlflow server for a cluster sweep: loopback, one worker, job runner off, SQLite on local disk
# (KANLIB_MLFLOW_DIR or /var/tmp/kanlib-mlflow-$$USER); prints the export line for MLFLOW_TRACKING_URI
mlflow-server: setup
	$(SERVER) start --port $(MLFLOW_PORT)

mlflow-server-status:
	$(SERVER) status

mlflow-server-stop:
	$(SERVER) stop

bench: setup
	$(BIN)/python benchmarks/grid_scaling.py
	$(BIN)/python benchmarks/seed_sweep.py

clean:
	rm -rf $(VENV) .snakemake results mlflow.db mlruns report.html
