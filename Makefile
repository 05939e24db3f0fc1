# The README's two commands: `make run` (set up, then run the default sweep) and
# `make test` (set up, then run the tests). Both start with `make setup`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
SNAKEMAKE := $(BIN)/snakemake
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: setup run test test-cluster bench clean

setup: $(VENV)/.installed

# torch is pinned to the CPU build that lies on this machine's disk; everything else
# comes from pyproject.toml (editable install of kanlib).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: setup
	$(SNAKEMAKE) --cores $(CORES)
	$(SNAKEMAKE) --cores 1 --report report.html
	@echo "Report: $(CURDIR)/report.html"

test: setup
	$(BIN)/python -m pytest -q

test-cluster: setup
	bash tests/cluster/start_slurm.sh
	$(BIN)/python -m pytest -q -m cluster tests/test_cluster.py

bench: setup
	$(BIN)/python benchmarks/grid_scaling.py
	$(BIN)/python benchmarks/seed_sweep.py

clean:
	rm -rf $(VENV) .snakemake results mlflow.db mlruns report.html
