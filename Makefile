# Two commands for a fresh clone: `make demo` and `make test`.
# Both create .venv when missing. `make demo` installs the runtime dependencies only
# (torch, numpy, rich, PyYAML, safetensors: ~0.83 GB, no byte-code precompiled); `make test`
# adds the dev extra (the report extra, linters, type checker, test oracles, Ray). Each install
# step re-runs only when pyproject.toml or constraints.txt changed since it last ran
# (stamp files).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
RUNTIME := $(VENV)/.robustact-runtime
DEV := $(VENV)/.robustact-dev

.PHONY: demo test test-all lint typecheck pytest pytest-all install install-dev install-report clean bench

install: $(RUNTIME)
install-dev: $(DEV)

$(RUNTIME): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# --no-compile: Python writes byte-code only for the modules that are imported (~240 MB
	@# of .pyc for every module of every package otherwise)
	$(PIP) install --quiet --no-compile -c constraints.txt "torch==2.13.0"
	$(PIP) install --quiet --no-compile -c constraints.txt -e .
	@touch $(RUNTIME)

$(DEV): $(RUNTIME)
	$(PIP) install --quiet -c constraints.txt -e ".[dev]"
	@# torchattacks declares torchvision (no CPU build here); it is a test-only oracle.
	$(PIP) install --quiet -c constraints.txt --no-deps torchattacks
	@touch $(DEV)

# the demo prints its table and writes results + demo-result.json; the HTML/LaTeX report
# files need the report extra (make install-report, or make test's dev extra)
demo: $(RUNTIME)
	$(VENV)/bin/robustact demo

install-report: $(RUNTIME)
	$(PIP) install --quiet -c constraints.txt -e ".[report]"

lint: $(DEV)
	$(VENV)/bin/ruff check src tests benchmarks examples tools
	$(VENV)/bin/ruff format --check src tests benchmarks examples tools

typecheck: $(DEV)
	$(VENV)/bin/mypy

# make test: everything but the tests marked heavy (minutes each), to stay under 10 minutes
# on 2 cores; make test-all runs those too.
pytest: $(DEV)
	$(VENV)/bin/pytest -q -p no:cacheprovider -m "not heavy"

pytest-all: $(DEV)
	$(VENV)/bin/pytest -q -p no:cacheprovider

test: lint typecheck pytest

test-all: lint typecheck pytest-all

bench: $(DEV)
	$(PY) benchmarks/attacks.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
