# Two commands do all set-up on a fresh machine:
#   make search   installs nas into .venv (once) and runs `nas search +space=hybrid` on the embedded data
#   make test     also installs the test tools (pytest, Playwright, Schemathesis, ...) and runs the suite
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: search test lint

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(TEST_STAMP)

search: $(STAMP)
	$(VENV)/bin/nas search +space=hybrid

test: $(TEST_STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m pytest -q --durations=25

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports
