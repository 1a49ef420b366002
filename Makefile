# Two commands: `make demo` runs the pipeline on the embedded synthetic trial,
# `make test` runs the tests. Both set up .venv from requirements.lock first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(abspath $(VENV))/bin
CORES ?= all
export PATH := $(BIN):$(PATH)

.PHONY: demo test test-fast setup clean-results lint

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.lock
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $@

demo: setup
	$(BIN)/snakemake --cores $(CORES)
	$(BIN)/snakemake --report results/synthetic-demo/report.html
	@echo "Results in results/synthetic-demo/: report.html (every figure and table), tables/, survival/, figures/; every stage scored against the synthetic truth in results/synthetic-demo/truth/scores.csv"

# Two pytest-xdist workers, one test module to a worker at a time (module fixtures built once), in
# the order tests/conftest.py gives: the SLURM tests' waiting overlaps the unit tests' computing.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

test: setup
	$(BIN)/python -m pytest $(XDIST)

# The edit loop: unit tests only, no Snakemake run (the `e2e` marker); a few minutes on 2 cores.
test-fast: setup
	$(BIN)/python -m pytest $(XDIST) -m "not e2e"

lint: setup
	$(BIN)/snakemake --lint

clean-results:
	rm -rf results/*/ .snakemake
