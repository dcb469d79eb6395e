# The two commands of the README:  make demo  |  make test
SHELL := /bin/bash
export BILLING_HOME ?= $(CURDIR)/.billing_home
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# One "planned" event per run and batched per-organization events (README, "Performance settings").
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= 1
export DAGSTER_EVENT_BATCH_SIZE ?= 1000
VENV := .venv/bin

.PHONY: demo test check unit ui setup instance bench-ingest bench-billing bench-delivery clean

setup:
	@scripts/bootstrap.sh

# DAGSTER_HOME gets the production deploy/dagster.yaml when PostgreSQL is configured, else the embedded one.
instance:
	@mkdir -p "$(DAGSTER_HOME)" "$(BILLING_HOME)"
	@if [ -n "$$DAGSTER_PG_HOST" ]; then cp deploy/dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"; \
	 else cp dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"; fi

## Install everything, then bill last month's demo data on embedded defaults and print the result.
demo: setup instance
	@$(VENV)/billing-pipeline demo

LINTED := billing_pipeline billing_pipeline_tests benchmarks scripts
# The clock forced to these instants for the period, schedule and invoicing tests (BILLING_TEST_NOW).
FORCED_NOWS := 2027-01-01T00:00:00Z 2028-02-29T12:00:00Z 2026-12-31T23:59:00Z
DATED_TESTS := billing_pipeline_tests/unit/test_periods.py billing_pipeline_tests/unit/test_invoices.py \
	billing_pipeline_tests/orchestration/test_definitions.py billing_pipeline_tests/orchestration/test_invoice_assets.py \
	billing_pipeline_tests/orchestration/test_cli.py billing_pipeline_tests/unit/test_late_usage.py \
	billing_pipeline_tests/unit/test_reports_aging.py billing_pipeline_tests/unit/test_lifecycle_domain.py \
	billing_pipeline_tests/unit/test_proration.py billing_pipeline_tests/unit/test_subscription_changes.py \
	billing_pipeline_tests/orchestration/test_customers_cli.py

## Lint, format check, the layer contracts, the one module allowed Dagster internals.
check: setup
	@$(VENV)/ruff check -q $(LINTED) && echo "ruff check: clean"
	@$(VENV)/ruff format -q --check $(LINTED) && echo "ruff format: clean"
	@$(VENV)/lint-imports --no-logo --no-cache pyproject.toml | grep -E "KEPT|BROKEN|^Contracts" ; test $${PIPESTATUS[0]} -eq 0 || $(VENV)/lint-imports --no-logo --no-cache pyproject.toml
	@$(VENV)/python scripts/check_dagster_internals.py

## Install everything, then the checks, the dated tests at forced clocks, and the whole test suite
## (unit, db, orchestration, integration, e2e).
test: check
	@for now in $(FORCED_NOWS); do \
	  echo "== dated tests with the clock at $$now"; \
	  BILLING_TEST_NOW=$$now $(VENV)/python -m pytest -q -p no:cacheprovider $(DATED_TESTS) || exit 1; \
	done
	@$(VENV)/python -m pytest -p no:cacheprovider billing_pipeline_tests

unit: setup
	@$(VENV)/python -m pytest -q billing_pipeline_tests/unit

## The Dagster UI and daemon on the same instance as the demo: http://127.0.0.1:3000
## Run from DAGSTER_HOME: in the repository root `dagster dev` warns that ./dagster.yaml is not
## DAGSTER_HOME's (`make instance` copied it there). PYTHONWARNINGS silences exactly the
## SupersessionWarning "Function `dev_command` is superseded" (Dagster's CLI, before our code loads).
ui: setup instance
	@cd "$(DAGSTER_HOME)" && PYTHONWARNINGS='ignore:Function `dev_command` is superseded' \
	  $(CURDIR)/$(VENV)/dagster dev -w $(CURDIR)/workspace.yaml -h 127.0.0.1 -p 3000

## Benchmarks (not part of the tests; results land in benchmarks/results/ and the README)
bench-ingest: setup
	@$(VENV)/python benchmarks/bench_ingest.py --events 2000000 --events 10000000
bench-billing: setup
	@$(VENV)/python benchmarks/bench_billing.py --orgs 10000 --events 10000000
bench-delivery: setup
	@$(VENV)/python benchmarks/bench_delivery.py --invoices 10000

clean:
	rm -rf .billing_home .dagster_home test-artifacts
