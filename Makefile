# Two commands on a fresh machine: `make run` (the whole pipeline locally) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit integration iac bench lock clean browser clients

$(STAMP): requirements/dev.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) is required" >&2; exit 1; }
	@test -x $(BIN)/python || { echo "make: creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "make: installing dependencies into $(VENV) (minutes the first time; a line a package)"
	@set -o pipefail; $(BIN)/pip install --disable-pip-version-check --progress-bar off -r requirements/dev.txt \
		| sed -un 's/^Collecting \([^ ]*\).*/  \1/p'
	@$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@echo "make: dependencies installed"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/lakebox run

test: $(STAMP) lint typecheck iac browser clients
	$(BIN)/pytest tests

# The dashboard test opens the page in a real headless Chromium (Debian's package; installed when missing).
browser:
	@bash scripts/ensure-chromium.sh

# The AWS clients the endpoint tests drive (AWS CLI, newest boto3 with PyAthena, dbt-athena), in venvs of their own.
clients:
	@bash scripts/ensure-clients.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy layers/common/datalake functions lakebox glue bench
	MYPYPATH=ml/forecast $(BIN)/mypy -m forecaster -m train -m inference

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit -m "not slow"

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

iac: $(STAMP)
	bash scripts/lint-iac.sh

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

# Deploy to AWS: `make deploy ENV=dev` (a samconfig.toml environment). The Spark job's script, datalake.zip and the
# EMR Serverless Python environment are uploaded to the stack's ArtifactsBucket after `sam deploy`.
.PHONY: deploy package-artifacts
ENV ?= default
SAM ?= $(if $(wildcard .tools/sam/bin/sam),.tools/sam/bin/sam,sam)

deploy: $(STAMP)
	$(SAM) build --config-env $(ENV)
	$(SAM) deploy --config-env $(ENV)
	$(MAKE) --no-print-directory package-artifacts ENV=$(ENV)

package-artifacts: $(STAMP)
	$(BIN)/python scripts/package-artifacts.py --config-env $(ENV)

lock:
	$(PYTHON) -m venv /tmp/dl-lock && /tmp/dl-lock/bin/pip install -q -r requirements/dev.in
	( echo "# Full lock of requirements/dev.in (pip freeze); regenerate with: make lock"; /tmp/dl-lock/bin/pip freeze ) > requirements/dev.txt

clean:
	rm -rf $(VENV) .tools .aws-sam .lakebox .pytest_cache .mypy_cache .ruff_cache
