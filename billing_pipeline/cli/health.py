"""``billing-pipeline health``: the probes of the ``service_health`` asset, printed; exit 1 when
anything is down. Read-only: it records no state and tells nobody (the schedule does)."""

from __future__ import annotations

import click

from billing_pipeline.cli.base import load_settings, main
from billing_pipeline.clock import utc_now


@main.command("health")
@click.option(
    "--timeout",
    type=click.IntRange(1, 60),
    default=None,
    help="Seconds each probe may take (default: HEALTH_PROBE_TIMEOUT_SECONDS).",
)
def health(timeout: int | None) -> None:
    """Probe the billing database, payment gateway, document store and mailer, as configured;
    print each one's status, latency and detail. Exit code 1 when any is down."""
    settings = load_settings()  # first: importing the definitions reads the settings too, past this handler
    from billing_pipeline.clients.health import run_probes
    from billing_pipeline.definitions import resources
    from billing_pipeline.defs.health import health_probes

    seconds = timeout or settings.health_probe_timeout_seconds
    try:
        ready = {name: resource.process_config_and_initialize() for name, resource in resources(settings).items()}
    except Exception as exc:  # noqa: BLE001 - a missing secret (STRIPE_API_KEY) is a configuration error
        raise click.ClickException(f"configuration error: {exc}") from None
    probes = health_probes(
        ready["billing_db"], ready["document_store"], ready["payment_gateway"], ready["mailer"], seconds
    )
    results = run_probes(probes, seconds)
    click.echo(f"Service health at {utc_now():%Y-%m-%d %H:%M:%S} UTC (timeout {seconds} s):")
    for result in results:
        click.echo(f"  {result.component:<16} {result.status.value:<15} {result.latency_ms:>8.1f} ms  {result.detail}")
    down = [result.component for result in results if not result.healthy]
    if down:
        click.echo(f"DOWN: {', '.join(down)}")
        raise SystemExit(1)
    click.echo("all healthy")
