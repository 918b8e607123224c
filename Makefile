# Two commands for a fresh clone: `make demo` and `make test`.
# Both create .venv when missing and (re)install only when pyproject.toml or
# constraints.txt changed since the last install (stamp file).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.robustact-installed

.PHONY: demo test lint typecheck pytest install clean bench

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt "torch==2.13.0"
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	@# torchattacks declares torchvision (no CPU build here); it is a test-only oracle.
	$(PIP) install --quiet --disable-pip-version-check -c constraints.txt --no-deps torchattacks
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/robustact demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider

test: lint typecheck pytest

bench: $(STAMP)
	$(PY) benchmarks/attacks.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .mypy_cache .ruff_cache .pytest_cache
