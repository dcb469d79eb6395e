"""Operator alerts: four sensors that hand notices to ``services.alerts`` (Slack, in-app, e-mail).

* ``run_failure_alert_sensor``: every failed run of the instance (this code location's, including
  runs the CLI executes in process, which have no code-location origin), one alert (key
  ``run_failure:{run_id}``) with job, partition or range, error and a link to the run.
* ``failure_rate_alert_sensor`` (every 5 min): more than ``ALERT_FAILURE_THRESHOLD`` failed runs
  of a job within ``ALERT_FAILURE_WINDOW_HOURS``: one alert per crossing, one "back under" notice;
  the jobs in alarm live in the sensor's cursor (``domain.alerts.failure_rate_changes``).
* ``service_health_alert_sensor`` (every 60 s): the changes ``service_health`` recorded
  (``defs.health.health_changes``), each under its own dedupe key: down once, recovered once.
* ``invoice_failures_alert_sensor`` (every 5 min): organizations an invoice run left FAILED
  (``invoice_errors``) for the last two closed periods, one alert per period listing them, once no
  run of that invoices job is in progress.
* ``alert_redelivery_sensor`` (every 5 min): alerts a channel could not send yet, sent again up
  to ``NOTIFICATION_MAX_ATTEMPTS``, then dead letters.

The notification ledger (unique per dedupe key and channel) makes a replayed tick send nothing
twice; a tick whose alert could not even be recorded (billing database down) raises, so Dagster
keeps its cursor and the next tick tries again.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence

import dagster as dg
from sqlalchemy import Engine

from billing_pipeline.clients.slack import SlackWebhookClient
from billing_pipeline.clock import utc_now
from billing_pipeline.db.invoices import get_errors
from billing_pipeline.defs.delivery_resources import MailerResource
from billing_pipeline.defs.health import health_changes
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.domain.alerts import (
    FailedRun,
    PendingLateUsageLike,
    failure_rate_changes,
    health_alert,
    invoice_failures_alert,
    late_usage_alert,
    run_failure_alert,
)
from billing_pipeline.domain.model import BillingInterval
from billing_pipeline.domain.periods import previous_period
from billing_pipeline.services.alerts import AlertRouting, AlertService, alert_channels
from billing_pipeline.services.notifications import DeliveryResult, NotificationDispatcher

HEALTH_REPLAY = dt.timedelta(minutes=10)  # each tick re-reads this much before its cursor (deduped)
HEALTH_FIRST_LOOK = dt.timedelta(hours=1)  # a sensor without a cursor looks back this far, not all history
FAILED_RUNS_LIMIT = 10_000


class AlertsResource(dg.ConfigurableResource):
    """Where operator alerts go (ALERT_CHANNELS, ALERT_EMAIL_TO, SLACK_WEBHOOK_URL) and the UI they link to."""

    channels: list[str]
    email_to: str | None = None
    email_from: str = "billing@example.com"
    slack_webhook_url: str | None = None  # dg.EnvVar("SLACK_WEBHOOK_URL"): a secret
    slack_timeout_seconds: int = 10
    max_attempts: int = 3
    webserver_url: str = "http://127.0.0.1:3000"

    def service(self, engine, mailer: MailerResource) -> AlertService:
        routing = AlertRouting(tuple(self.channels), self.email_to)
        slack = (
            SlackWebhookClient(self.slack_webhook_url, timeout_seconds=float(self.slack_timeout_seconds))
            if self.slack_webhook_url
            else None
        )
        email = mailer.mailer() if "email" in routing.channels else None
        channels = alert_channels(engine, slack=slack, mailer=email, email_from=self.email_from)
        return AlertService(engine, NotificationDispatcher(engine, channels, max_attempts=self.max_attempts), routing)


def _status(running: bool) -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED


def _outcome(result: DeliveryResult | None) -> str:
    if result is None:
        return "no channel routed (ALERT_CHANNELS)"
    return ", ".join(f"{o.channel}={o.status}" for o in result.outcomes)


def _run_error(context: dg.RunFailureSensorContext) -> str:
    lines = [context.failure_event.message or ""]
    for event in context.get_step_failure_events():
        error = getattr(event.event_specific_data, "error", None)
        while error is not None and error.cause is not None:  # Dagster's wrapper -> the user's exception
            error = error.cause
        if error is not None:
            lines.append(f"{event.step_key}: {error.message.strip()}")
    return "\n".join(line for line in lines if line)


def run_failure_alert_sensor(*, name: str, running: bool) -> dg.SensorDefinition:
    # monitor_all_code_locations: runs started by `billing-pipeline` and `dagster job execute` run in
    # process and carry no code-location origin, so a sensor limited to its own location skips them.
    @dg.run_failure_sensor(
        name=name, default_status=_status(running), minimum_interval_seconds=30, monitor_all_code_locations=True
    )
    def _sensor(
        context: dg.RunFailureSensorContext,
        billing_db: BillingDatabaseResource,
        mailer: MailerResource,
        alerts: AlertsResource,
    ):
        """One alert per failed run of this code location (Slack, in-app, e-mail as ALERT_CHANNELS routes it)."""
        run = context.dagster_run
        alert = run_failure_alert(
            run_id=run.run_id,
            job_name=run.job_name,
            tags=dict(run.tags),
            error=_run_error(context),
            webserver_url=alerts.webserver_url,
        )
        result = alerts.service(billing_db.engine(), mailer).raise_alert(alert)
        context.log.info(f"{alert.dedupe_key}: {_outcome(result)}")

    return _sensor


def _failed_runs(context: dg.SensorEvaluationContext, since: dt.datetime) -> list[FailedRun]:
    records = context.instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], updated_after=since), limit=FAILED_RUNS_LIMIT
    )
    ours = {job.name for job in context.repository_def.get_all_jobs()} if context.repository_def else None
    return [
        FailedRun(r.dagster_run.run_id, r.dagster_run.job_name, r.update_timestamp.astimezone(dt.UTC))
        for r in records
        if ours is None or r.dagster_run.job_name in ours
    ]


def failure_rate_alert_sensor(
    *, name: str, threshold: int, window: dt.timedelta, interval_seconds: int = 300, running: bool
):
    @dg.sensor(name=name, minimum_interval_seconds=interval_seconds, default_status=_status(running))
    def _sensor(
        context: dg.SensorEvaluationContext,
        billing_db: BillingDatabaseResource,
        mailer: MailerResource,
        alerts: AlertsResource,
    ):
        """More than ALERT_FAILURE_THRESHOLD failed runs of a job in ALERT_FAILURE_WINDOW_HOURS: one alert
        per crossing, one notice when back under (the jobs in alarm are the cursor)."""
        now = utc_now()
        in_alarm = json.loads(context.cursor) if context.cursor else {}
        failed = _failed_runs(context, now - window)
        changes, after = failure_rate_changes(failed, in_alarm, threshold=threshold, window=window, now=now)
        service = alerts.service(billing_db.engine(), mailer) if changes else None
        for change in changes:
            alert = change.alert(alerts.webserver_url)
            context.log.info(f"{alert.dedupe_key}: {_outcome(service.raise_alert(alert))}")  # type: ignore[union-attr]
        context.update_cursor(json.dumps(after, sort_keys=True))
        if not changes:
            return dg.SkipReason(f"no crossing; in alarm: {sorted(after) or 'none'}")
        return None

    return _sensor


def service_health_alert_sensor(*, name: str, running: bool):
    @dg.sensor(name=name, minimum_interval_seconds=60, default_status=_status(running))
    def _sensor(
        context: dg.SensorEvaluationContext,
        billing_db: BillingDatabaseResource,
        mailer: MailerResource,
        alerts: AlertsResource,
    ):
        """A component of service_health went down or came back: one alert each way."""
        now = utc_now()
        since = dt.datetime.fromisoformat(context.cursor) - HEALTH_REPLAY if context.cursor else now - HEALTH_FIRST_LOOK
        changes = list(health_changes(context.instance, since=since))
        if changes:
            service = alerts.service(billing_db.engine(), mailer)
            for change in changes:
                alert = health_alert(change, alerts.webserver_url)
                context.log.info(f"{alert.dedupe_key}: {_outcome(service.raise_alert(alert))}")
        context.update_cursor(now.isoformat())
        return None if changes else dg.SkipReason("no health change")

    return _sensor


IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def invoice_failures_alert_sensor(*, name: str, jobs: dict[BillingInterval, str], interval_seconds: int, running: bool):
    """``jobs``: interval -> the name of its invoices job (its runs in progress postpone the alert)."""

    @dg.sensor(name=name, minimum_interval_seconds=interval_seconds, default_status=_status(running))
    def _sensor(
        context: dg.SensorEvaluationContext,
        billing_db: BillingDatabaseResource,
        mailer: MailerResource,
        alerts: AlertsResource,
    ):
        """Organizations an invoice run left FAILED for one of the last two closed periods: one alert per
        period listing them, once no run of that interval's invoices job is in progress."""
        engine, told, now = billing_db.engine(), [], utc_now()
        for interval, job_name in jobs.items():
            busy = context.instance.get_run_records(dg.RunsFilter(job_name=job_name, statuses=IN_PROGRESS), limit=1)
            if busy:
                continue
            last = previous_period(interval, now)
            for period in (last.previous(), last):
                errors = get_errors(engine, interval, period.key)
                if errors:
                    alert = invoice_failures_alert(
                        interval=interval.value,
                        period_key=period.key,
                        errors=errors,
                        webserver_url=alerts.webserver_url,
                    )
                    told.append(f"{alert.dedupe_key}: {_outcome(alerts.service(engine, mailer).raise_alert(alert))}")
        for line in told:
            context.log.info(line)
        return dg.SkipReason("; ".join(told) if told else "no organization left failed")

    return _sensor


def late_usage_alert_sensor(
    *,
    name: str,
    pending_late_usage: Callable[[Engine], Sequence[PendingLateUsageLike]],
    interval_seconds: int,
    running: bool,
):
    """Tells the pending late-usage adjustments (``db.late_usage_ledger.pending_late_usage``), once
    per distinct backlog (``domain.alerts.late_usage_alert``)."""

    @dg.sensor(name=name, minimum_interval_seconds=interval_seconds, default_status=_status(running))
    def _sensor(
        context: dg.SensorEvaluationContext,
        billing_db: BillingDatabaseResource,
        mailer: MailerResource,
        alerts: AlertsResource,
    ):
        """Late-usage adjustments that no finalized invoice carries yet: one alert per distinct backlog."""
        engine = billing_db.engine()
        alert = late_usage_alert(pending_late_usage(engine), webserver_url=alerts.webserver_url)
        if alert is None:
            return dg.SkipReason("no late-usage adjustment pending")
        outcome = _outcome(alerts.service(engine, mailer).raise_alert(alert))
        context.log.info(f"{alert.dedupe_key}: {outcome}")
        return dg.SkipReason(f"{alert.dedupe_key}: {outcome}")

    return _sensor


def alert_redelivery_sensor(*, name: str, interval_seconds: int = 300, running: bool):
    @dg.sensor(name=name, minimum_interval_seconds=interval_seconds, default_status=_status(running))
    def _sensor(
        context: dg.SensorEvaluationContext,
        billing_db: BillingDatabaseResource,
        mailer: MailerResource,
        alerts: AlertsResource,
    ):
        """Sends again the alerts some channel has not delivered yet (failed, under the attempt cap)."""
        results = alerts.service(billing_db.engine(), mailer).redeliver()
        for result in results:
            context.log.info(f"{result.dedupe_key}: {_outcome(result)}")
        return dg.SkipReason(f"{len(results)} alert(s) sent again" if results else "every alert is settled")

    return _sensor


__all__ = [
    "AlertsResource",
    "alert_redelivery_sensor",
    "failure_rate_alert_sensor",
    "invoice_failures_alert_sensor",
    "late_usage_alert_sensor",
    "run_failure_alert_sensor",
    "service_health_alert_sensor",
]
