# Two commands matter: `make serve` and `make test`. Everything installs into .venv.
# BENTOML_HOME is respected when set (default: BentoML's ~/bentoml).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 3000
BENTO  ?= oip-sklearn:latest
BACKEND ?= $(or $(BENTOML_CONTAINERIZE_BACKEND),docker)

.PHONY: venv train train-if-empty serve test test-fast lint format bento container bench load clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

train: venv          ## train a new version of every default model
	$(BIN)/python train.py

train-if-empty: venv
	$(BIN)/python train.py --if-empty

serve: train-if-empty   ## set up, train if the store is empty, serve V2 on $(HOST):$(PORT)
	$(BIN)/bentoml serve service:Gateway --host $(HOST) --port $(PORT)

test: venv           ## the whole test suite (what CI runs)
	$(BIN)/python -m pytest

test-fast: venv      ## everything but the e2e tests (no `bentoml serve` subprocesses)
	$(BIN)/python -m pytest -m "not e2e"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy adapters service.py train.py liveserver.py

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bento: train-if-empty   ## build the Bento (models, code, pinned packages)
	$(BIN)/bentoml build

container: bento     ## container image from the Bento (BENTOML_CONTAINERIZE_BACKEND=docker|buildah|podman)
	$(BIN)/bentoml containerize $(BENTO) --backend $(BACKEND)

load: venv           ## locust against $(LOAD_URL) (starts a server if none answers); reports in results/load/
	$(BIN)/python load_tests/run.py --url $(or $(LOAD_URL),http://127.0.0.1:3000)

bench: venv          ## side-by-side vs MLServer 1.7.1 and a bare ceiling (~18 min; BENCH_ARGS=--quick ~3 min)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
