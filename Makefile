# edgebench: the two commands a newcomer needs are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The development install names torch exactly: on PyPI a plain `torch` for Linux
# x86_64 is the multi-GB CUDA build (give a CPU wheel's spec, or a local index, here).
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed
# pip prints what it collects and downloads (no -q: a long install shows its progress)
PIP_INSTALL := $(PIP) install --progress-bar on

.PHONY: demo demo-install test provision lint typecheck pytest install legacy clean schemas wheel lock

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) "$(TORCH_SPEC)"
	$(PIP_INSTALL) -e ".[dev,keras-jax-cpu,jax-cpu,keras-torch,torch,docker,postgres,report,parquet,broker,inference-cpu,inference-export]" "$(TORCH_SPEC)"
	touch $(STAMP)

install: $(STAMP)

# Only what the demo needs, all CPU builds from PyPI: the embedded broker and
# Keras on JAX and on TensorFlow-CPU (the `demo` extra; README "Quick start"
# has its size and time). A full development install already has two backends.
$(DEMO_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -e ".[demo]"
	touch $(DEMO_STAMP)

demo-install:
	@if [ -f $(STAMP) ]; then echo "make demo: using the development install in $(VENV)"; \
	else $(MAKE) --no-print-directory $(DEMO_STAMP); fi

## Run the quickstart: embedded broker, local agent, MLP + CNN on two backends, report.
demo: demo-install
	$(VENV)/bin/controller demo

## Set up what the tests need (as root: apt packages, Docker engine, Python 3.6 venvs),
## lint, type-check and run every test (real Mosquitto, real training on the CPU).
## SKIP_PROVISION=1 runs the tests on the machine as it is (skipped groups are summarised).
test: provision $(STAMP) lint typecheck pytest

provision:
	@scripts/provision.sh

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

## A wheel of this checkout in dist/ (README "Install"): pip install dist/edgebench-*.whl[EXTRAS]
wheel: $(STAMP)
	$(PIP) wheel --no-deps --no-build-isolation -w dist .

## Regenerate the images' constraints files (images/common/constraints/) after changing a pin
lock: $(STAMP)
	$(PY) scripts/lock_images.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache
