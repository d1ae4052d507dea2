# StoryVerse API gateway layer. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := -e contracts -e servicekit -e process-metrics -e plans -e gateway-config -e kong-emulator -e kong-pluginserver -e kong-plugins -e auth-service -e rate-limiting-service -e sample-backend

.DEFAULT_GOAL := help

# pip's own progress is shown, one line per package as it is collected, downloaded and built; dropped are the lines that
# repeat on every run ("Requirement already satisfied") and each build's bookkeeping. Errors never are.
PIP_QUIET_LINES := -e '^Requirement already satisfied' -e "^WARNING: Location '.*' is ignored" -e '^Looking in ' \
	-e '^  \(Installing build dependencies\|Checking if build backend\|Getting requirements to build\|Preparing \(editable \)\?metadata\)' \
	-e '^  \(Created wheel\|Stored in directory\)' -e "finished with status 'done'" \
	-e '^ \+\(Attempting uninstall\|Found existing installation\|Uninstalling \|Successfully uninstalled\)'

$(STAMP): constraints.txt requirements-dev.txt */pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "[install] need $(PYTHON) on PATH"; exit 1; }
	@test -x $(BIN)/python || { echo "[install] creating the virtualenv $(VENV)"; $(PYTHON) -m venv $(VENV); }
	@echo "[install] installing the packages and dev tools into $(VENV) (the first time takes a few minutes)"
	@set -o pipefail; $(BIN)/pip install --disable-pip-version-check --progress-bar off -c constraints.txt \
		$(PACKAGES) -r requirements-dev.txt 2>&1 | { grep --line-buffered -v $(PIP_QUIET_LINES) || true; }
	@touch $(STAMP)
	@echo "[install] done: $(VENV) is ready"

.PHONY: install
install: $(STAMP) ## Create the virtualenv and install every package (editable, pinned by constraints.txt)

.PHONY: services
services: ## Make sure PostgreSQL and Redis are running (start or install them if not)
	@scripts/ensure-services.sh

.PHONY: test
test: install services ## Run the whole test suite (sets everything up first, headless Chromium included)
	@scripts/ensure-browser.sh
	$(BIN)/python -m pytest

.PHONY: run
run: install services ## Run the whole local stack in the foreground (proxy on :8000); Ctrl-C stops it
	$(BIN)/python scripts/run_stack.py

.PHONY: lint
lint: install ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

.PHONY: format
format: install ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

.PHONY: bench
bench: install services ## Run every benchmark; each writes docs/benchmarks*.md with the command that produced it
	$(BIN)/python -m bench
	$(BIN)/python -m bench.emulator_bench
	$(BIN)/python -m bench.jwt_bench
	$(BIN)/python -m bench.quota_bench
	$(BIN)/python -m bench.rbac_bench
	$(BIN)/python -m bench.auth_bench
	$(BIN)/python -m bench.pluginserver_bench

.PHONY: kong-validate
kong-validate: install ## Check kong.yml: generated files up to date (sv-gateway-config check), emulator schema validation, decK, routing matrix
	$(BIN)/sv-gateway-config check
	$(BIN)/sv-gateway-config check --settings gateway-config/examples/production.yaml
	scripts/ensure-deck.sh
	$(BIN)/python -m pytest tests/config -q

.PHONY: helm-check
helm-check: install ## Lint, render and validate the Helm chart for every ci/ values file
	scripts/install-helm.sh
	$(BIN)/python helm/tools/gen_schema.py --check
	$(BIN)/python helm/tools/gen_dashboards.py --check
	$(BIN)/python helm/tools/gen_readme.py --check
	$(BIN)/python -m pytest tests/deploy -q

.PHONY: test-kong
test-kong: install ## Opt-in: end-to-end journeys against real Kong 3.9 in Docker (needs a Docker engine; not in make test)
	$(BIN)/python scripts/test_kong.py

.PHONY: plugin-info
plugin-info: install ## Print what each plugin server tells Kong about its plugin (the query commands)
	@for f in kong-plugins/plugins/*.py; do $(BIN)/python $$f --dump; echo; done

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'
