# Lodestar: `make run` starts everything on this machine, `make test` checks everything.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint fmt bench demo install clean

install: $(STAMP)

# A .venv without pip is one whose creation was cut short (Ctrl-C): made again.
$(STAMP): pyproject.toml
	@$(PY) -m pip --version >/dev/null 2>&1 || { rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m devstack

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared services devstack tests bench
	$(VENV)/bin/lint-imports

test: lint
	$(VENV)/bin/pytest -q -p no:cacheprovider --durations=15

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m pip install --quiet 'duckdb==2.0.0'
	$(PY) -m bench.freshness
	$(PY) -m bench.ingest
	$(PY) -m bench.query

demo: $(STAMP)
	$(PY) -m devstack.demo

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
