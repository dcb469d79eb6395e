# The two commands of the README:  make demo  |  make test
SHELL := /bin/bash
export BILLING_HOME ?= $(CURDIR)/.billing_home
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
# One "planned" event per run and batched per-organization events (README, "Performance settings").
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= 1
export DAGSTER_EVENT_BATCH_SIZE ?= 1000
VENV := .venv/bin

.PHONY: demo test unit ui setup instance bench-ingest bench-billing bench-delivery clean

setup:
	@scripts/bootstrap.sh

# DAGSTER_HOME gets the production dagster.yaml when PostgreSQL is configured, else the embedded one.
instance:
	@mkdir -p "$(DAGSTER_HOME)" "$(BILLING_HOME)"
	@if [ -n "$$DAGSTER_PG_HOST" ]; then cp dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"; \
	 else cp dagster.local.yaml "$(DAGSTER_HOME)/dagster.yaml"; fi

## Install everything, then bill last month's demo data on embedded defaults and print the result.
demo: setup instance
	@$(VENV)/billing-pipeline demo

## Install everything, then run the whole test suite (unit, orchestration, integration, e2e).
test: setup
	@$(VENV)/python -m pytest -p no:cacheprovider billing_pipeline_tests

unit: setup
	@$(VENV)/python -m pytest -q billing_pipeline_tests/unit

## The Dagster UI and daemon on the same instance as the demo: http://127.0.0.1:3000
ui: setup instance
	@$(VENV)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## Benchmarks (not part of the tests; results land in benchmarks/results/ and the README)
bench-ingest: setup
	@$(VENV)/python benchmarks/bench_ingest.py --events 2000000 --events 10000000
bench-billing: setup
	@$(VENV)/python benchmarks/bench_billing.py --orgs 10000 --events 10000000
bench-delivery: setup
	@$(VENV)/python benchmarks/bench_delivery.py --invoices 10000

clean:
	rm -rf .billing_home .dagster_home test-artifacts
