"""Launch billing work in this process on a Dagster instance (CLI and demo).

Runs started here are ordinary Dagster runs: they appear in the UI with their
partitions, exactly as if launched from it.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from billing_pipeline.defs.automation import RANGE_END_TAG, RANGE_START_TAG, missing_organization_partitions
from billing_pipeline.defs.invoicing import DRY_RUN_TAG
from billing_pipeline.defs.partitions import ORGANIZATION_PARTITIONS, billing_key, organization_batches
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import hour_key

#: Console logging of in-process runs: warnings only; the full log is in the instance (UI).
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    partition_range: tuple[str, str]


def sync_organization_partitions(instance: dg.DagsterInstance, engine) -> int:
    """Add missing organizations to the dynamic partitions; returns how many were added."""
    missing = missing_organization_partitions(instance, engine)
    for name, keys in missing.items():
        instance.add_dynamic_partitions(name, keys)
    return sum(len(keys) for keys in missing.values())


def wanted_batches(
    instance: dg.DagsterInstance, interval: BillingInterval, organizations: Sequence[str], batch_size: int
) -> list[list[str]]:
    """Batches of the chosen organizations (all when none is given); unknown ones are an error."""
    all_orgs = instance.get_dynamic_partitions(ORGANIZATION_PARTITIONS[interval].name)
    missing = sorted(set(organizations) - set(all_orgs))
    if missing:
        raise ValueError(f"unknown {interval.value}-billed organization(s): {', '.join(missing)}")
    return organization_batches(all_orgs, batch_size, organizations or None)


def execute_batches(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    interval: BillingInterval,
    period_key: str,
    batches: Sequence[Sequence[str]],
    *,
    run_config: dict,
    dry_run: bool,
) -> list[RunOutcome]:
    """Execute ``job`` in this process once per batch, over the batch's key range."""
    outcomes = []
    for chunk in batches:
        start = str(billing_key(interval, period_key, chunk[0]))
        end = str(billing_key(interval, period_key, chunk[-1]))
        tags = {RANGE_START_TAG: start, RANGE_END_TAG: end, "billing/period": period_key, "billing/trigger": "cli"}
        if dry_run:
            tags[DRY_RUN_TAG] = "true"
        result = job.execute_in_process(
            instance=instance, tags=tags, run_config={**QUIET_LOGS, **run_config}, raise_on_error=False
        )
        outcomes.append(RunOutcome(result.run_id, result.success, (start, end)))
    return outcomes


def run_hours(defs: dg.Definitions, instance: dg.DagsterInstance, first: dt.datetime, last: dt.datetime) -> RunOutcome:
    """Materialize hourly_usage for every hour from ``first`` to ``last`` inclusive, in one run."""
    job = defs.resolve_job_def("hourly_usage_job")
    start, end = hour_key(first), hour_key(last)
    result = job.execute_in_process(
        instance=instance,
        tags={RANGE_START_TAG: start, RANGE_END_TAG: end, "billing/trigger": "cli"},
        run_config=QUIET_LOGS,
        raise_on_error=False,
    )
    return RunOutcome(result.run_id, result.success, (start, end))


def run_period(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    interval: BillingInterval,
    period_key: str,
    *,
    organizations: Sequence[str] = (),
    dry_run: bool = False,
    batch_size: int = 1000,
) -> list[RunOutcome]:
    """Invoice one period: one run per batch of organizations (contiguous key ranges)."""
    batches = wanted_batches(instance, interval, organizations, batch_size)
    # a range runs over every key between its ends; the config filter keeps it to the chosen ones
    config = {"dry_run": dry_run, "organizations": list(organizations)}
    run_config = {
        "ops": {
            f"{interval.value}_invoice_drafts": {"config": config},
            f"{interval.value}_invoices": {"config": config},
        }
    }
    job = defs.resolve_job_def(f"{interval.value}_invoices_job")
    return execute_batches(job, instance, interval, period_key, batches, run_config=run_config, dry_run=dry_run)
