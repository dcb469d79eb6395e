"""Service health in the UI: the ``service_health`` asset with one asset check per component,
run by ``service_health_schedule`` (every 15 minutes by default).

Why an asset with checks: each component gets its own check (``database_health``,
``payment_gateway_health``, ``document_store_health``, ``mailer_health``) with a green/red status
on the asset, in the catalog and in the asset graph, a history of evaluations with latency and
detail, and the usual alerting on failed checks; observations alone show only metadata.

State lives in the Dagster instance, not the billing database: each materialization's metadata
holds every component's state (``state``) and the changes it saw (``changes``); the next run reads
the latest one. So an outage of the billing database is recorded (and told once) like any other,
and ``health_changes`` replays the notices for a dispatcher whose ledger dedupes on their keys.
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg

from billing_pipeline.clients.health import (
    Probe,
    folder_probe,
    not_configured,
    run_probes,
    s3_probe,
    smtp_probe,
    stripe_probe,
)
from billing_pipeline.db.health import check_database
from billing_pipeline.defs import delivery_resources as r
from billing_pipeline.defs.resources import BillingDatabaseResource
from billing_pipeline.domain.health import (
    ComponentState,
    HealthChange,
    HealthResult,
    HealthStatus,
    Transition,
    apply_results,
)

SERVICE_HEALTH_KEY = dg.AssetKey("service_health")
#: component -> its asset check (literal names: greppable, as in the UI)
CHECK_NAMES = {
    "database": "database_health",
    "payment_gateway": "payment_gateway_health",
    "document_store": "document_store_health",
    "mailer": "mailer_health",
}
_LATENCY_KEYS = {
    "database": "database_latency_ms",
    "payment_gateway": "payment_gateway_latency_ms",
    "document_store": "document_store_latency_ms",
    "mailer": "mailer_latency_ms",
}
_CHECK_DESCRIPTIONS = {
    "database": "A new connection to the billing database (connect + auth) and its schema revision.",
    "payment_gateway": "Stripe: one authenticated read (GET /v1/customers?limit=1); no gateway: not configured.",
    "document_store": "S3: HEAD of the bucket; local folder: a temporary file written and removed.",
    "mailer": "SMTP: connect, STARTTLS and AUTH, then QUIT; outbox folder: a temporary file written and removed.",
}


def health_probes(
    billing_db: BillingDatabaseResource,
    document_store: r.DocumentStoreResource,
    payment_gateway: r.PaymentGatewayResource,
    mailer: r.MailerResource,
    timeout: float,
) -> list[Probe]:
    """One probe per component, for the implementation each resource configures."""
    url = billing_db.url
    return [
        Probe("database", lambda: (HealthStatus.UP, check_database(url, timeout))),
        _payment_probe(payment_gateway, timeout),
        _document_probe(document_store, timeout),
        _mailer_probe(mailer, timeout),
    ]


def _payment_probe(resource: r.PaymentGatewayResource, timeout: float) -> Probe:
    if isinstance(resource, r.StripePaymentGatewayResource):
        return stripe_probe(resource.api_key, api_base=resource.api_base, timeout=timeout)
    if isinstance(resource, r.NoPaymentGatewayResource):
        return not_configured("payment_gateway", "no payment gateway (PAYMENT_GATEWAY=none)")
    raise TypeError(f"no health probe for {type(resource).__name__}")


def _document_probe(resource: r.DocumentStoreResource, timeout: float) -> Probe:
    if isinstance(resource, r.S3DocumentStoreResource):
        return s3_probe(
            resource.bucket,
            endpoint_url=resource.endpoint_url,
            region=resource.region,
            access_key_id=resource.aws_access_key_id,
            secret_access_key=resource.aws_secret_access_key,
            timeout=timeout,
        )
    if isinstance(resource, r.LocalDocumentStoreResource):
        return folder_probe("document_store", resource.documents_dir, "document folder")
    raise TypeError(f"no health probe for {type(resource).__name__}")


def _mailer_probe(resource: r.MailerResource, timeout: float) -> Probe:
    if isinstance(resource, r.SMTPMailerResource):
        return smtp_probe(
            resource.host,
            resource.port,
            username=resource.username,
            password=resource.password,
            security=resource.security,
            timeout=timeout,
            ca_file=resource.ca_file,
        )
    if isinstance(resource, r.OutboxMailerResource):
        return folder_probe("mailer", resource.outbox_dir, "outbox folder")
    raise TypeError(f"no health probe for {type(resource).__name__}")


def stored_states(instance: dg.DagsterInstance) -> dict[str, ComponentState]:
    """Every component's state as the latest ``service_health`` materialization left it."""
    event = instance.get_latest_materialization_event(SERVICE_HEALTH_KEY)
    materialization = event.asset_materialization if event is not None else None
    if materialization is None or "state" not in materialization.metadata:
        return {}
    data = materialization.metadata["state"].value
    return {name: ComponentState.from_dict(item) for name, item in dict(data).items()}


def health_changes(instance: dg.DagsterInstance, *, since: dt.datetime | None = None) -> Iterator[HealthChange]:
    """Every change notice recorded by ``service_health`` runs (after ``since``), oldest first.
    Each has a deterministic ``dedupe_key``: hand them to a dispatcher whose ledger is unique on
    (key, channel) and each change is sent once, however often this is replayed."""
    records_filter = dg.AssetRecordsFilter(
        asset_key=SERVICE_HEALTH_KEY, after_timestamp=since.timestamp() if since else None
    )
    cursor = None
    while True:
        page = instance.fetch_materializations(records_filter, limit=100, cursor=cursor, ascending=True)
        for record in page.records:
            materialization = record.asset_materialization
            changes = materialization.metadata.get("changes") if materialization else None
            for item in changes.value if changes is not None else []:
                yield HealthChange.from_dict(item)
        if not page.has_more:
            return
        cursor = page.cursor


def _check_result(result: HealthResult) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=CHECK_NAMES[result.component],
        passed=result.healthy,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.detail,
        metadata={
            "status": result.status.value,
            "latency_ms": dg.FloatMetadataValue(result.latency_ms),
            "detail": result.detail,
            "checked_at": dg.TimestampMetadataValue(result.checked_at.timestamp()),
        },
    )


def _summary(results: list[HealthResult]) -> str:
    rows = [
        f"| {x.component} | {x.status.value} | {x.latency_ms:.1f} | {x.detail.replace('|', '/')} |" for x in results
    ]
    return "\n".join(["| component | status | latency ms | detail |", "|---|---|---|---|", *rows])


def service_health_asset(*, timeout_seconds: float) -> dg.AssetsDefinition:
    @dg.asset(
        key=SERVICE_HEALTH_KEY,
        group_name="operations",
        check_specs=[
            dg.AssetCheckSpec(name=name, asset=SERVICE_HEALTH_KEY, description=_CHECK_DESCRIPTIONS[component])
            for component, name in CHECK_NAMES.items()
        ],
        kinds={"python"},
    )
    def service_health(
        context: dg.AssetExecutionContext,
        billing_db: BillingDatabaseResource,
        document_store: r.DocumentStoreResource,
        payment_gateway: r.PaymentGatewayResource,
        mailer: r.MailerResource,
    ) -> dg.MaterializeResult:
        """Probes the billing database, the payment gateway, the document store and the mailer,
        each with one cheap real request and a timeout (HEALTH_PROBE_TIMEOUT_SECONDS). A check per
        component shows up/down with latency and detail; a change to unhealthy and back is logged
        and recorded once (metadata ``changes``, read by ``health_changes``)."""
        previous = stored_states(context.instance)
        probes = health_probes(billing_db, document_store, payment_gateway, mailer, timeout_seconds)
        results = run_probes(probes, timeout_seconds)
        states, changes = apply_results(previous, results)
        for change in changes:
            log = context.log.warning if change.transition is Transition.BECAME_UNHEALTHY else context.log.info
            log(f"{change.subject}: {change.detail} (dedupe key {change.dedupe_key})")
        down = [x.component for x in results if not x.healthy]
        context.log.info(f"{len(results) - len(down)} of {len(results)} components healthy; down: {down or 'none'}")
        metadata: dict = {
            "summary": dg.MarkdownMetadataValue(_summary(results)),
            "down": len(down),
            "state": dg.JsonMetadataValue({name: state.to_dict() for name, state in sorted(states.items())}),
            "changes": dg.JsonMetadataValue([change.to_dict() for change in changes]),
        }
        metadata.update({_LATENCY_KEYS[x.component]: dg.FloatMetadataValue(x.latency_ms) for x in results})
        return dg.MaterializeResult(metadata=metadata, check_results=[_check_result(x) for x in results])

    return service_health


def service_health_schedule(*, name: str, job, cron: str, running: bool) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=name,
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED,
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        """Probes every outside service once per tick."""
        tick = context.scheduled_execution_time.astimezone(dt.UTC)
        return dg.RunRequest(run_key=f"service-health-{tick:%Y-%m-%dT%H:%M}", tags={"billing/trigger": name})

    return _schedule
