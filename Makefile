# Two commands matter: `make serve` and `make test`. Everything installs into .venv.
# BENTOML_HOME is respected when set (default: BentoML's ~/bentoml).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 3000
BENTO  ?= oip-sklearn:latest
BACKEND ?= $(or $(BENTOML_CONTAINERIZE_BACKEND),docker)

.PHONY: venv train train-if-empty serve score test test-fast fuzz lint format docs bento container bench load soak audit clean proto haproxy cluster rolling-restart cluster-stop capacity

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-score.txt requirements-ray.txt requirements-boosting.txt requirements-dev.txt
	@echo "make: creating $(VENV) and installing the pinned requirements (about a minute the first time) ..."
	$(PYTHON) -m venv $(VENV)
	@# uv installs the same pinned set as pip would, with parallel downloads: seconds, not minutes
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements-dev.txt
	touch $@

train: venv          ## train a new version of every default model
	$(BIN)/python train.py

train-if-empty: venv
	@echo "make: training the default models that have no version in the store yet ..."
	$(BIN)/python train.py --if-empty

serve: train-if-empty   ## set up, train if the store is empty, serve V2 on $(HOST):$(PORT)
	@$(BIN)/python -m adapters.bento.describe --url http://$(HOST):$(PORT)
	$(BIN)/bentoml serve service:Gateway --host $(HOST) --port $(PORT)

score: venv          ## batch predictions into a database: SCORE_ARGS="--model iris --input data.csv [--db URL]"
	$(BIN)/python score.py $(SCORE_ARGS)

test: venv           ## the whole test suite (what CI runs)
	$(BIN)/python -m pytest

test-fast: venv      ## everything but the e2e tests (no `bentoml serve` subprocesses)
	$(BIN)/python -m pytest -m "not e2e"

fuzz: venv           ## schemathesis on every V2 route, both placements side by side, FUZZ_EXAMPLES (500) per operation (~4 min)
	FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),500) $(BIN)/python -m pytest -p no:cacheprovider \
		-p no:randomly -n 2 --dist load tests/test_fuzz.py

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy adapters service.py train.py score.py liveserver.py deploy/cluster
	$(BIN)/lint-imports  # the layers of adapters/ (pyproject.toml, docs/architecture.md)

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: venv           ## regenerate docs/configuration.md from the settings' definitions (adapters/config/environment.py)
	$(BIN)/python -m adapters.config.reference docs/configuration.md

bento: venv          ## build the Bento: MODELS="churn:best fraud:latest" packs exactly those versions, trains nothing; without MODELS, every version of the served models (defaults trained if missing)
	$(if $(strip $(MODELS)),,$(MAKE) --no-print-directory train-if-empty)
	$(BIN)/python -m adapters.bento.build $(MODELS)

container: bento     ## container image from the Bento (BENTOML_CONTAINERIZE_BACKEND=docker|buildah|podman)
	$(BIN)/bentoml containerize $(BENTO) --backend $(BACKEND)

load: venv           ## locust against $(LOAD_URL) (starts a server if none answers); reports in results/load/
	$(BIN)/python load_tests/run.py --url $(or $(LOAD_URL),http://127.0.0.1:3000)

soak: venv           ## 10 min at saturation, new versions polled in: 0 failures, RSS flat ±10 % (SOAK_TIME=30s: short); results/soak/
	$(BIN)/python load_tests/soak.py --time $(or $(SOAK_TIME),10m) --users $(or $(SOAK_USERS),64)

audit: venv          ## pip-audit of requirements.txt; exits 3 ("NOT AUDITED") when the vulnerability service is unreachable
	$(BIN)/python scripts/audit.py

bench: venv          ## side-by-side vs MLServer 1.7.1 and a bare ceiling, HTTP and gRPC (~55 min; BENCH_ARGS=--quick ~5 min)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

proto: venv          ## regenerate adapters/grpc/generated/*_pb2*.py from its proto/ (Triton's protos)
	cd adapters/grpc/generated && ../../../$(BIN)/python -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. \
		--grpc_python_out=. proto/grpc_service.proto proto/model_config.proto proto/health.proto
	sed -i 's/^import model_config_pb2 as/from . import model_config_pb2 as/; s/^import grpc_service_pb2 as/from . import grpc_service_pb2 as/; s/^import health_pb2 as/from . import health_pb2 as/' adapters/grpc/generated/*_pb2*.py

haproxy:             # Debian's HAProxy, installed when missing (make cluster balances with it)
	@command -v haproxy >/dev/null 2>&1 || test -x /usr/sbin/haproxy || { \
		echo "make: installing haproxy (apt-get) ..."; export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq haproxy || { apt-get update -qq && apt-get install -y -qq haproxy; }; }

cluster: train-if-empty haproxy   ## REPLICAS (3) replicas behind HAProxy on LB_PORT (8080), gRPC on LB_GRPC_PORT (8081); returns when all are ready
	$(BIN)/python -m deploy.cluster up --replicas $(or $(REPLICAS),3) --lb-port $(or $(LB_PORT),8080) --lb-grpc-port $(or $(LB_GRPC_PORT),8081)

rolling-restart: venv   ## restart every replica of the cluster in turn, each drained first; returns when the last is UP again
	$(BIN)/python -m deploy.cluster rolling-restart

cluster-stop: venv   ## stop HAProxy and every replica of the cluster
	$(BIN)/python -m deploy.cluster down

capacity: venv       ## one replica pinned to one core, wrk on another: req/s, p99, memory per payload (~8 min; CAPACITY_ARGS=--quick); results/capacity/
	$(BIN)/python bench/capacity.py $(CAPACITY_ARGS)
