"""What ``billing-pipeline status`` reports about the deployment, read from the instance.

Schedules and sensors: the state the instance stores (started or stopped from the UI, the
CLI or the daemon), else the definition's default status; a running schedule's next tick
from the cron the instance stored for it (the one the daemon last evaluated), so the
answer does not depend on the crons of the shell that runs ``status``. The daemon: its
heartbeats. The billing database: delivery ledger rows not done, per channel, late hours and
late-usage adjustments not billed yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dagster as dg
from sqlalchemy import Engine

from billing_pipeline.db.late_usage_ledger import pending_late_usage
from billing_pipeline.db.reports import undone_deliveries
from billing_pipeline.db.usage import late_hours
from billing_pipeline.defs.dagster_internals import next_cron_tick
from billing_pipeline.domain import money

UTC = dt.UTC

#: The code location of workspace.yaml: its stored states win over another location's of the same name.
LOCATION_NAME = "billing_pipeline"


@dataclass(frozen=True)
class InstigatorRow:
    """One schedule or sensor as the deployment sees it."""

    name: str
    kind: str  # schedule | sensor
    state: str  # RUNNING | STOPPED
    source: str  # instance (stored state) | default (the definition's default status)
    trigger: str  # the cron (schedules) or "every N s" (sensors)
    next_tick: dt.datetime | None  # schedules that run only
    last_tick: str  # "2026-11-01 00:00 SUCCESS" or "never"


def _stored_states(instance: dg.DagsterInstance) -> dict[tuple[str, str], object]:
    """(SCHEDULE | SENSOR, name) -> the instance's InstigatorState, this project's location first."""
    states: dict[tuple[str, str], object] = {}
    for state in instance.all_instigator_state():
        key = (state.instigator_type.value, state.instigator_name)
        location = state.origin.repository_origin.code_location_origin.location_name
        if key not in states or location == LOCATION_NAME:
            states[key] = state
    return states


def _state_of(stored, default_running: bool) -> tuple[str, str]:
    """RUNNING | STOPPED and where it comes from; DECLARED_IN_CODE means "as the default says"."""
    if stored is not None and stored.status.value in ("RUNNING", "STOPPED"):
        return stored.status.value, "instance"
    return ("RUNNING" if default_running else "STOPPED"), "default"


def _last_tick(instance: dg.DagsterInstance, stored) -> str:
    if stored is None:
        return "never"
    ticks = instance.get_ticks(stored.instigator_origin_id, stored.selector_id, limit=1)
    if not ticks:
        return "never"
    at = dt.datetime.fromtimestamp(ticks[0].timestamp, UTC)
    return f"{at:%Y-%m-%d %H:%M} {ticks[0].status.value}"


def schedule_rows(
    instance: dg.DagsterInstance, schedules: Iterable[dg.ScheduleDefinition], now: dt.datetime
) -> list[InstigatorRow]:
    states = _stored_states(instance)
    rows = []
    for schedule in schedules:
        stored = states.get(("SCHEDULE", schedule.name))
        running = schedule.default_status == dg.DefaultScheduleStatus.RUNNING
        state, source = _state_of(stored, running)
        cron = schedule.cron_schedule
        stored_cron = getattr(stored.instigator_data, "cron_schedule", None) if stored is not None else None
        if isinstance(stored_cron, str):
            cron = stored_cron
        tz = schedule.execution_timezone or "UTC"
        next_tick = next_cron_tick(cron, now, tz) if state == "RUNNING" else None
        rows.append(
            InstigatorRow(schedule.name, "schedule", state, source, cron, next_tick, _last_tick(instance, stored))
        )
    return rows


def sensor_rows(instance: dg.DagsterInstance, sensors: Iterable[dg.SensorDefinition]) -> list[InstigatorRow]:
    states = _stored_states(instance)
    rows = []
    for sensor in sensors:
        stored = states.get(("SENSOR", sensor.name))
        state, source = _state_of(stored, sensor.default_status == dg.DefaultSensorStatus.RUNNING)
        trigger = f"every {sensor.minimum_interval_seconds} s"
        rows.append(InstigatorRow(sensor.name, "sensor", state, source, trigger, None, _last_tick(instance, stored)))
    return rows


def format_instigators(rows: Sequence[InstigatorRow]) -> list[str]:
    lines = ["Schedules and sensors (state as stored in the instance, else the default; times UTC):"]
    for r in rows:
        state = r.state if r.source == "instance" else f"{r.state} (default)"
        nxt = f"next {r.next_tick:%Y-%m-%d %H:%M}" if r.next_tick else "next -"
        lines.append(f"  {r.name:<32} {state:<19} {r.trigger:<12} {nxt:<21} last {r.last_tick}")
    return lines


def daemon_line(instance: dg.DagsterInstance, now: dt.datetime) -> str:
    """``daemon: healthy ...``, ``daemon: NOT healthy ...`` or ``daemon: not running``."""
    statuses = instance.get_daemon_statuses()
    beats = [s.last_heartbeat.timestamp for s in statuses.values() if s.last_heartbeat is not None]
    if not beats:
        return "daemon: not running (no heartbeat in this instance; schedules and sensors do not tick)"
    age = max(0, round(now.timestamp() - max(beats)))
    unhealthy = sorted(name for name, s in statuses.items() if s.required and not s.healthy)
    if not unhealthy:
        return f"daemon: healthy, last heartbeat {age} s ago"
    return f"daemon: NOT healthy, last heartbeat {age} s ago; unhealthy: {', '.join(unhealthy)}"


def delivery_lines(engine: Engine) -> list[str]:
    """Ledger rows not succeeded or skipped, per channel, over every period."""
    undone = undone_deliveries(engine)
    if not undone:
        return ["Deliveries not done: none"]
    lines = ["Deliveries not done (ledger, every period; `billing-pipeline deliver PERIOD` retries):"]
    for channel, counts in sorted(undone.items()):
        lines.append(f"  {channel:<7} " + ", ".join(f"{status} {n}" for status, n in sorted(counts.items())))
    return lines


def pending_late_usage_lines(engine: Engine, limit: int = 50) -> list[str]:
    """Hours with events not re-aggregated yet (``late_usage_sensor`` re-aggregates them), then the
    late usage of finalized periods that no finalized invoice carries yet (``pending_late_usage``:
    billed on the organization's next invoice as adjustment lines, README "Late usage")."""
    hours = late_hours(engine)
    if not hours:
        lines = ["Late usage: no hour waiting for re-aggregation"]
    else:
        first, last = hours[0][0], hours[-1][0]
        lines = [
            f"Late usage: {len(hours)} hour(s) with events not yet re-aggregated, "
            f"{first:%Y-%m-%d %H:00} .. {last:%Y-%m-%d %H:00}"
        ]
    pending = pending_late_usage(engine)
    lines.append(f"Late-usage adjustments pending: {len(pending)}")
    for p in pending[:limit]:
        usage = f"{'+' if p.usage_delta >= 0 else '-'}{money.format_quantity(abs(p.usage_delta))}"
        lines.append(
            f"  {p.org_id:<16} {p.period_label:<20} {p.source_number:<16} {p.charge_code:<14} {usage:>10} "
            f"{money.format_amount(p.amount, p.currency):>14}  {p.state}"
        )
    if len(pending) > limit:
        lines.append(f"  ... and {len(pending) - limit} more")
    return lines


def deployment_report(instance: dg.DagsterInstance, defs: dg.Definitions, engine: Engine, now: dt.datetime) -> str:
    rows = schedule_rows(instance, defs.schedules or (), now) + sensor_rows(instance, defs.sensors or ())
    lines = [daemon_line(instance, now), *format_instigators(rows)]
    lines += delivery_lines(engine) + pending_late_usage_lines(engine)
    return "\n".join(lines)
