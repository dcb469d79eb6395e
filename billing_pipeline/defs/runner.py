"""Launch billing work in this process on a Dagster instance (CLI and demo).

Runs started here are ordinary Dagster runs: they appear in the UI with their
partitions, exactly as if launched from it.
"""

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from billing_pipeline.db import reference
from billing_pipeline.defs.automation import RANGE_END_TAG, RANGE_START_TAG
from billing_pipeline.defs.invoicing import DRY_RUN_TAG
from billing_pipeline.defs.partitions import ORGANIZATION_PARTITIONS, billing_key, hour_key
from billing_pipeline.domain.model import BillingInterval


#: Console logging of in-process runs: warnings only; the full log is in the instance (UI).
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    partition_range: tuple[str, str]


def sync_organization_partitions(instance: dg.DagsterInstance, engine) -> int:
    """Add missing organizations to the dynamic partitions; returns how many were added."""
    added = 0
    for interval, ids in reference.organization_ids_by_interval(engine).items():
        name = ORGANIZATION_PARTITIONS[interval].name
        existing = set(instance.get_dynamic_partitions(name))
        new = [org for org in ids if org not in existing]
        if new:
            instance.add_dynamic_partitions(name, new)
            added += len(new)
    return added


def run_hours(
    defs: dg.Definitions, instance: dg.DagsterInstance, first: dt.datetime, last: dt.datetime
) -> RunOutcome:
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
    job = defs.resolve_job_def(f"{interval.value}_invoices_job")
    keys = instance.get_dynamic_partitions(ORGANIZATION_PARTITIONS[interval].name)
    wanted = set(organizations)
    if wanted:
        missing = sorted(wanted - set(keys))
        if missing:
            raise ValueError(f"unknown {interval.value}-billed organization(s): {', '.join(missing)}")
        keys = [k for k in keys if k in wanted]
    config = {"dry_run": dry_run, "organizations": list(organizations)}
    run_config = {**QUIET_LOGS, "ops": {f"{interval.value}_invoice_drafts": {"config": config},
                          f"{interval.value}_invoices": {"config": config}}}
    all_keys = instance.get_dynamic_partitions(ORGANIZATION_PARTITIONS[interval].name)
    outcomes = []
    for i in range(0, len(keys), batch_size):
        chunk = keys[i : i + batch_size]
        # a range runs over every key between its ends; the config filter keeps it to the chunk
        first, last = sorted(chunk, key=all_keys.index)[0], sorted(chunk, key=all_keys.index)[-1]
        start, end = str(billing_key(interval, period_key, first)), str(billing_key(interval, period_key, last))
        tags = {RANGE_START_TAG: start, RANGE_END_TAG: end, "billing/period": period_key, "billing/trigger": "cli"}
        if dry_run:
            tags[DRY_RUN_TAG] = "true"
        result = job.execute_in_process(instance=instance, tags=tags, run_config=run_config, raise_on_error=False)
        outcomes.append(RunOutcome(result.run_id, result.success, (start, end)))
    return outcomes
