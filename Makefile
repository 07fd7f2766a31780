# Set-up from nothing: `make test` and `make demo` create .venv if it is missing and install into it.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.atso_installed
PYTEST_ARGS ?=
DEMO_DIR ?= demo_work
DEMO_ARGS ?=

.PHONY: install test test-all test-slurm demo clean-demo

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# torch and torchvision are resolved together from the registry (see NNUNET_NOTES: the local CPU
# torch wheel breaks torchvision's compiled ops, and nnU-Net imports torchvision via timm).
$(STAMP): $(PY) setup.py
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PY) -m pytest -m "slow or not slow"

# The SLURM executor against a real single-node cluster (root; Debian packages installed if missing).
# A cluster that already answers is used as it is; one started here is stopped afterwards (a cluster
# whose node does not come up is torn down and started once more before the suite gives up).
SLURM_TEST_ARGS ?= -v -s
test-slurm: $(STAMP)
	@if sinfo --noheader >/dev/null 2>&1; then started=0; else scripts/slurm_cluster.sh up || { echo "slurm_cluster: second try from a clean state"; scripts/slurm_cluster.sh down; scripts/slurm_cluster.sh up; } || exit 1; started=1; fi; \
	$(PY) -m pytest --slurm -m slurm_cluster $(SLURM_TEST_ARGS) tests/execution/test_slurm_integration.py; rc=$$?; \
	if [ $$started = 1 ]; then scripts/slurm_cluster.sh down; fi; exit $$rc

# --num-processes 1: the demo's cases are tiny; spawned workers would each pay an nnU-Net import
# (pseudo-label ingestion: docs/lab/benchmarks.md). Local runs use warm workers and, without a GPU,
# 2 jobs at a time with 1 torch thread each (see README); DEMO_ARGS=--no-warm-workers for plain subprocesses.
demo: $(STAMP)
	$(VENV)/bin/atso_nnunet_run -d synthetic -f 10pct --nnunet-dir $(DEMO_DIR)/nnunet --run-dir $(DEMO_DIR)/run --num-processes 1 $(DEMO_ARGS)
