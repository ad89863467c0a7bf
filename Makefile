# The README's two commands: `make run` and `make test`. Both build what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# What serving needs, and no more: the test and benchmark tools are extras of their own.
SERVE_STAMP := $(VENV)/.serve

.PHONY: run test test-fast lint bench stack render mutation clean

# pip's own progress lines are the progress: a first install takes a minute or two.
$(SERVE_STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing what the service needs (first start only)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --progress-bar on -e .
	touch $(SERVE_STAMP)

$(STAMP): $(SERVE_STAMP)
	@echo "==> installing the test tools (lint, types, browser, security scan)"
	$(BIN)/pip install --progress-bar on -e '.[dev]'
	touch $(STAMP)

## run: create .venv (service packages only), train the bundled models if absent, serve on 127.0.0.1:8001 (SQLite)
run: $(SERVE_STAMP)
	$(BIN)/nexus-ml serve --host 127.0.0.1 --port 8001

## test: the whole suite (SQLite and PostgreSQL; the live stack and browser tests when their binaries exist)
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy src
	# pip-audit cannot reach a vulnerability database from this workplace (PyPI's
	# per-version JSON answers 404, OSV does not resolve): unauditable packages are
	# a loud warning; a vulnerability found, or any unaccepted bandit finding, fails.
	ALLOW_UNAUDITED=$${ALLOW_UNAUDITED:-1} BIN=$(BIN) bash scripts/security-scan.sh
	$(BIN)/python -m pytest --all $(PYTEST_ARGS)

## test-fast: the edit loop: every test but the slow, live-stack and browser suites (no lint)
test-fast: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## mutation: mutation testing per module (slow: see docs/testing.md); MODULES="journal writer" for some
mutation: $(STAMP)
	bash scripts/mutation.sh $(MODULES)

## stack: Prometheus and Alertmanager (Debian binaries) on loopback against a running service
stack: $(SERVE_STAMP)
	$(BIN)/nexus-ml stack up

## render: regenerate every file under deploy/ from the code
render: $(SERVE_STAMP)
	$(BIN)/nexus-ml render deploy --defaults

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
