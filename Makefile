# megatron-hybrid: every target sets up .venv (Python 3.12) on first use.
# `make smoke` runs the embedded default job, `make test` the CPU test suite (what CI runs).

SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
# megatron-core >= 0.17 needs Python >= 3.12: the first python3.12 that runs, from the PATH or
# from pyenv's versions (a pyenv shim on the PATH may exist and still refuse to run).
PYTHON312 ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12.*/bin/python3.12; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1 && { echo "$$p"; break; }; done)

# 7B launch variables (see launch/README.md).
NODES    ?= 1
DATA     ?=
CKPT_DIR ?= runs/checkpoints
TB_DIR   ?= runs/tensorboard
# Extra trainer overrides for the 7B targets, e.g. ARGS="--train-iters 100 --micro-batch-size 2".
ARGS     ?=
# `make tensorboard` serves every run under LOGDIR (smoke and pretraining alike).
LOGDIR   ?= runs
PYTEST_ARGS ?=
# The small-scale ladder (launch/ladder/README.md); LADDER_ARGS="--dry-run" prints the plan.
SIZES       ?= 60m 100m
ARMS        ?= transformer hybrid gdn
MINUTES     ?= 20
LADDER_ARGS ?=
# A fresh .venv holds ~5 GiB (PyPI's torch wheel for Linux is the CUDA build, with its nvidia-* libraries), and pip
# keeps the downloaded wheels (~3 GiB) until the install ends.
VENV_MIN_FREE_GIB ?= 9

.PHONY: venv venv-disk-check test test-gpu smoke lint format bench bench-kernels ladder pretrain-7b pretrain-7b-olmo3 tensorboard clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@if [ -z "$(PYTHON312)" ]; then \
		echo "error: python3.12 not found (megatron-core 0.19 needs Python >= 3.12)."; \
		echo "       install it (e.g. 'pyenv install 3.12') or run: make PYTHON312=/path/to/python3.12 ..."; \
		exit 1; fi
	@$(MAKE) --no-print-directory venv-disk-check
	@test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	$(PY) -m pip install -q --no-cache-dir --upgrade pip
	$(PY) -m pip install -q --no-cache-dir -r requirements.txt
	$(PY) -m pip install -q --no-cache-dir --no-deps -e .
	@touch $@

# Run by the venv set-up only (an existing venv needs no room); a target of its own so that it can be tested.
venv-disk-check:
	@free=$$(df -Pk . "$${TMPDIR:-/tmp}" | awk 'NR > 1 {g = int($$4 / 1048576); if (m == "" || g < m) m = g} END {print m}'); \
	if [ "$$free" -lt $(VENV_MIN_FREE_GIB) ]; then \
		echo "error: $$free GiB free on the disk of $(CURDIR) or TMPDIR; setting up $(VENV) needs about $(VENV_MIN_FREE_GIB) GiB."; \
		echo "       free some space (old clones' .venv folders are 5 GiB each), or set TMPDIR to a roomier disk,"; \
		echo "       or lower the check with: make VENV_MIN_FREE_GIB=N ..."; \
		exit 1; fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: venv lint
	$(PY) -m pytest -m "not gpu" -q $(PYTEST_ARGS)

test-gpu: venv
	$(PY) -m pytest -m gpu -q $(PYTEST_ARGS)

smoke: venv
	$(PY) -m megatron_hybrid.smoke

bench-kernels: venv
	$(PY) bench/gdn_kernels.py

bench: venv bench-kernels
	$(PY) bench/layers.py

ladder: venv
	$(PY) -m launch.ladder.run --sizes $(SIZES) --arms $(ARMS) --minutes $(MINUTES) $(LADDER_ARGS)

pretrain-7b: venv
	NODES=$(NODES) DATA="$(DATA)" CKPT_DIR=$(CKPT_DIR) TB_DIR=$(TB_DIR) bash launch/pretrain.sh olmo_hybrid_7b $(ARGS)

pretrain-7b-olmo3: venv
	NODES=$(NODES) DATA="$(DATA)" CKPT_DIR=$(CKPT_DIR) TB_DIR=$(TB_DIR) bash launch/pretrain.sh olmo3_7b $(ARGS)

tensorboard: venv
	$(VENV)/bin/tensorboard --logdir $(LOGDIR) --bind_all

clean:
	rm -rf runs .pytest_cache .ruff_cache
