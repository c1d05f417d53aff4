# Two commands do all set-up on a fresh machine:
#   make search   installs into .venv (once) and runs `nas search +space=hybrid` on the embedded data
#   make test     installs into .venv (once) and runs the test suite
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: search test lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

search: $(STAMP)
	$(VENV)/bin/nas search +space=hybrid

test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports
