# Lodestar: `make run` starts everything on this machine, `make test` checks everything.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint fmt bench demo install clean

install: $(STAMP)

# Lodestar needs Python 3.11 or newer. A .venv without pip is one whose creation was
# cut short (Ctrl-C), and one of an older Python was made with an older PYTHON: either
# is made again, with PYTHON.
NEW_ENOUGH := -c 'import sys; sys.exit(sys.version_info < (3, 11))'
$(STAMP): pyproject.toml
	@$(PY) $(NEW_ENOUGH) 2>/dev/null && $(PY) -m pip --version >/dev/null 2>&1 || { \
	  $(PYTHON) $(NEW_ENOUGH) 2>/dev/null || { \
	    echo "Lodestar needs Python 3.11 or newer, and $(PYTHON) is" \
	      "$$($(PYTHON) --version 2>&1 | head -1): run make with PYTHON=python3.11 (or newer)" >&2; \
	    exit 1; }; \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
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
