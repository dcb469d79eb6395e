"""Launching billing work, in one place: batches of organizations, partition-range tags,
run keys and run requests (schedules and sensors), and runs in this process (CLI, demo).

A batch is a contiguous range of organization keys of one period (``2026-10-01|acme`` ..
``2026-10-01|souq``): one run, whose range is given by the two range tags. Hours go the
same way: one run per range of consecutive hours. Runs started in this process are
ordinary Dagster runs on the instance and show in the UI like the ones the daemon starts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from sqlalchemy import Engine

from billing_pipeline.db import reference
from billing_pipeline.defs.partitions import ORGANIZATION_PARTITIONS, billing_key
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import consecutive_hours, hour_key

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
PERIOD_TAG = "billing/period"
TRIGGER_TAG = "billing/trigger"
DRY_RUN_TAG = "billing/dry_run"

#: At most a month of hours per hourly_usage run (the asset's backfill policy says the same).
MAX_HOURS_PER_RUN = 24 * 31

#: Console logging of in-process runs: warnings only; the full log is in the instance (UI).
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def organization_batches(
    all_orgs: Sequence[str], batch_size: int, wanted: Collection[str] | None = None
) -> list[list[str]]:
    """``wanted`` organizations (default: all) in partition order, ``batch_size`` at a time.

    A batch becomes one run over the contiguous key range from its first to its last
    organization; organizations in between that are not wanted are skipped by the run's
    ``organizations`` config.
    """
    if wanted is None:
        ordered = list(all_orgs)
    else:
        chosen = set(wanted)
        ordered = [o for o in all_orgs if o in chosen]
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


def range_tags(start: str, end: str) -> dict[str, str]:
    """The tags that make a run cover the partition keys ``start`` .. ``end``."""
    return {RANGE_START_TAG: start, RANGE_END_TAG: end}


def batch_tags(interval: BillingInterval, period_key: str, batch: Sequence[str]) -> dict[str, str]:
    """A batch's run tags: its key range within the period, and the period."""
    first, last = billing_key(interval, period_key, batch[0]), billing_key(interval, period_key, batch[-1])
    return {**range_tags(str(first), str(last)), PERIOD_TAG: period_key}


def batch_run_key(prefix: str, period_key: str, batch: Sequence[str], *, by_members: bool = False) -> str:
    """``{prefix}-{period}-{first}-{last}``: an organization added later makes a new key.

    ``by_members`` hashes the batch's organizations instead, for batches of a chosen subset:
    a tick that sees the same subset again launches nothing new.
    """
    if by_members:
        return f"{prefix}-{period_key}-{hashlib.sha256(chr(10).join(batch).encode()).hexdigest()[:16]}"
    return f"{prefix}-{period_key}-{batch[0]}-{batch[-1]}"


def period_run_requests(
    all_orgs: Sequence[str],
    interval: BillingInterval,
    period_key: str,
    batch_size: int,
    *,
    run_key_prefix: str,
    wanted: Collection[str] | None = None,
    trigger: str | None = None,
    job_name: str | None = None,
    attempts: Mapping[str, int] | None = None,
    run_config: Callable[[list[str]], Mapping[str, Any]] | None = None,
) -> list[dg.RunRequest]:
    """One RunRequest per batch of ``wanted`` organizations (default all) of one period.

    With ``wanted`` the run key hashes the batch's organizations (see ``batch_run_key``);
    organizations between two wanted ones are in the range and re-checked by the run, unless
    ``run_config(batch)`` limits the run to its batch. ``attempts`` (ledger work done so far
    per organization) goes into the hashed key when above zero, so an organization wanted
    again after more work gets a new key while the same request stays the same one.
    """
    requests = []
    for batch in organization_batches(all_orgs, batch_size, wanted):
        tags = batch_tags(interval, period_key, batch)
        if trigger:
            tags[TRIGGER_TAG] = trigger
        members = [f"{org}@{attempts[org]}" if attempts and attempts.get(org) else org for org in batch]
        run_key = batch_run_key(run_key_prefix, period_key, members, by_members=wanted is not None)
        config = run_config(list(batch)) if run_config else None
        requests.append(dg.RunRequest(run_key=run_key, job_name=job_name, tags=tags, run_config=config))
    return requests


#: Run statuses of a run that has not finished: its organizations are being handled.
IN_FLIGHT_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def in_flight_organizations(instance: dg.DagsterInstance, job_name: str, all_orgs: Sequence[str]) -> set[str]:
    """Organizations in the key range of a queued or running ``job_name`` run, by period key.

    Returned as ``{"period|org", ...}`` keys so a sensor can leave them out: a batch already
    on its way is not requested again under another run key while it waits for a pool slot.
    """
    index = {org: i for i, org in enumerate(all_orgs)}
    busy: set[str] = set()
    for run in instance.get_runs(dg.RunsFilter(job_name=job_name, statuses=IN_FLIGHT_STATUSES)):
        first, last = run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)
        if not (first and last):
            first = last = run.tags.get("dagster/partition")
        if not (first and last) or "|" not in first or "|" not in last:
            continue
        period, start_org = first.split("|", 1)
        end_org = last.split("|", 1)[1]
        lo, hi = index.get(start_org), index.get(end_org)
        if lo is None or hi is None:
            continue
        busy.update(f"{period}|{org}" for org in all_orgs[lo : hi + 1])
    return busy


def not_yet_launched(
    instance: dg.DagsterInstance, schedule_name: str, requests: Iterable[dg.RunRequest]
) -> list[dg.RunRequest]:
    """The requests whose run key this schedule has not launched a run for yet.

    Dagster dedupes a schedule's run keys within one tick only; a cron that ticks more than
    once a period must not relaunch the batches launched on an earlier tick.
    """
    fresh = []
    for request in requests:
        tags = {"dagster/run_key": request.run_key, "dagster/schedule_name": schedule_name}
        if not instance.get_run_records(dg.RunsFilter(tags=tags), limit=1):
            fresh.append(request)
    return fresh


def hour_run_request(hour: dt.datetime) -> dg.RunRequest:
    """One hour's run; its key is the hour, so a tick repeated for the same hour is deduped."""
    key = hour_key(hour)
    return dg.RunRequest(run_key=key, partition_key=key)


def hour_range_run_requests(hours: Iterable[dt.datetime], *, trigger: str, run_key_prefix: str, version: str):
    """One RunRequest per range of consecutive ``hours`` (at most ``MAX_HOURS_PER_RUN`` each).

    The run key holds the range and ``version`` (what changed since: new events make a new key).
    """
    requests = []
    for run in consecutive_hours(hours, MAX_HOURS_PER_RUN):
        start, end = hour_key(run[0]), hour_key(run[-1])
        requests.append(
            dg.RunRequest(
                run_key=f"{run_key_prefix}-{start}-{end}-{version}",
                tags={**range_tags(start, end), TRIGGER_TAG: trigger},
            )
        )
    return requests


def billed_organizations(instance: dg.DagsterInstance, interval: BillingInterval) -> list[str]:
    """The interval's organization partition keys, in partition order."""
    return instance.get_dynamic_partitions(ORGANIZATION_PARTITIONS[interval].name)


def missing_organization_partitions(instance: dg.DagsterInstance, engine: Engine) -> dict[str, list[str]]:
    """Organization partitions to add, by partitions name: every organization not there yet."""
    missing = {}
    for interval, ids in reference.organization_ids_by_interval(engine).items():
        existing = set(billed_organizations(instance, interval))
        new = [org for org in ids if org not in existing]
        if new:
            missing[ORGANIZATION_PARTITIONS[interval].name] = new
    return missing


def sync_organization_partitions(instance: dg.DagsterInstance, engine: Engine) -> int:
    """Add missing organizations to the dynamic partitions; returns how many were added."""
    missing = missing_organization_partitions(instance, engine)
    for name, keys in missing.items():
        instance.add_dynamic_partitions(name, keys)
    return sum(len(keys) for keys in missing.values())


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    partition_range: tuple[str, str]


@dataclass(frozen=True)
class PeriodJob:
    """A job over period × organization partitions, and the ops its run config goes to."""

    interval: BillingInterval
    job_name: str
    config_ops: tuple[str, ...]


def wanted_batches(
    instance: dg.DagsterInstance, interval: BillingInterval, organizations: Sequence[str], batch_size: int
) -> list[list[str]]:
    """Batches of the chosen organizations (all when none is given); unknown ones are an error.

    Chosen organizations are batched in runs of consecutive partition keys: a run's output is
    reported on every key of its range, so a range must not cover an organization left out.
    """
    all_orgs = billed_organizations(instance, interval)
    missing = sorted(set(organizations) - set(all_orgs))
    if missing:
        raise ValueError(f"unknown {interval.value}-billed organization(s): {', '.join(missing)}")
    if not organizations:
        return organization_batches(all_orgs, batch_size)
    chosen, runs = set(organizations), [[]]
    for org in all_orgs:
        if org in chosen:
            runs[-1].append(org)
        elif runs[-1]:
            runs.append([])
    return [batch for run in runs if run for batch in organization_batches(run, batch_size)]


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
    for batch in batches:
        tags = {**batch_tags(interval, period_key, batch), TRIGGER_TAG: "cli"}
        if dry_run:
            tags[DRY_RUN_TAG] = "true"
        result = job.execute_in_process(
            instance=instance, tags=tags, run_config={**QUIET_LOGS, **run_config}, raise_on_error=False
        )
        outcomes.append(RunOutcome(result.run_id, result.success, (tags[RANGE_START_TAG], tags[RANGE_END_TAG])))
    return outcomes


def run_period(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job: PeriodJob,
    period_key: str,
    *,
    organizations: Sequence[str] = (),
    dry_run: bool = False,
    batch_size: int = 1000,
    finalize_within_grace: bool = False,
) -> list[RunOutcome]:
    """Run ``job`` for one period in this process: one run per batch of organizations."""
    batches = wanted_batches(instance, job.interval, organizations, batch_size)
    config = {
        "dry_run": dry_run,
        "organizations": list(organizations),
        "finalize_within_grace": finalize_within_grace,
    }
    run_config = {"ops": {op: {"config": config} for op in job.config_ops}}
    return execute_batches(
        defs.resolve_job_def(job.job_name),
        instance,
        job.interval,
        period_key,
        batches,
        run_config=run_config,
        dry_run=dry_run,
    )


def run_hours(
    defs: dg.Definitions, instance: dg.DagsterInstance, job_name: str, first: dt.datetime, last: dt.datetime
) -> RunOutcome:
    """Run ``job_name`` (hourly partitions) for every hour from ``first`` to ``last`` inclusive, in one run."""
    start, end = hour_key(first), hour_key(last)
    result = defs.resolve_job_def(job_name).execute_in_process(
        instance=instance,
        tags={**range_tags(start, end), TRIGGER_TAG: "cli"},
        run_config=QUIET_LOGS,
        raise_on_error=False,
    )
    return RunOutcome(result.run_id, result.success, (start, end))


def run_observations(instance: dg.DagsterInstance, run_id: str, asset_name: str) -> list[dict]:
    """The metadata of every observation of ``asset_name`` in run ``run_id`` (dry runs report there)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION).records
    found = []
    for record in records:
        observation = record.event_log_entry.asset_observation
        if observation is not None and observation.asset_key.to_user_string() == asset_name:
            found.append({k: v.value for k, v in observation.metadata.items()})
    return found
