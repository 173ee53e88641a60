# edgebench: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch (on PyPI a plain `torch` is a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest install legacy clean schemas

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev,keras-jax-cpu,keras-torch,torch,docker,postgres,report,parquet,broker,inference-cpu,inference-export]" "$(TORCH_SPEC)"
	touch $(STAMP)

install: $(STAMP)

## Run the quickstart: embedded broker, local agent, MLP + CNN on two backends, report.
demo: $(STAMP)
	$(VENV)/bin/controller demo

## Lint, type-check and run every test (real Mosquitto, real training on the CPU).
test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)

## The 2019 stacks' virtual environments (Python 3.6 + MXNet 1.4 / TensorFlow 1.13).
legacy:
	scripts/setup-legacy-venvs.sh

schemas: $(STAMP)
	$(VENV)/bin/controller schema export edgebench/schemas/json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
