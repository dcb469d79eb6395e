"""Health probes: one cheap, real request per outside service, each bounded by a timeout.

* mailer: SMTP connect + EHLO + STARTTLS + AUTH + QUIT (``SMTPMailer.session``, no message);
  the outbox folder: a temporary file written and removed.
* document store: S3 ``HEAD`` of the bucket; the local folder: a temporary file written and removed.
* payment gateway: Stripe ``GET /v1/customers?limit=1`` (an authenticated read the gateway itself
  needs, so a restricted key without balance access still probes truthfully); no gateway:
  ``not_configured``.
* database: ``db.health.check_database`` (composed with these in ``defs/health.py``).

A ``Probe``'s check returns ``(status, detail)`` or raises; ``run_probes`` runs them all at once
in threads and turns an exception, or no answer within the timeout, into ``down`` with a redacted
detail. Each client gets the same timeout on its sockets, so a hung server costs at most that.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from billing_pipeline.clients.documents import s3_client
from billing_pipeline.clients.mailer import SMTPMailer
from billing_pipeline.clients.payments import stripe_client
from billing_pipeline.clients.redaction import Redactor
from billing_pipeline.clock import utc_now
from billing_pipeline.domain.health import HealthResult, HealthStatus

__all__ = [
    "Probe",
    "folder_probe",
    "not_configured",
    "run_probes",
    "s3_probe",
    "smtp_probe",
    "stripe_probe",
]

Check = Callable[[], tuple[HealthStatus, str]]
_MAX_DETAIL = 300


@dataclass(frozen=True)
class Probe:
    component: str  # database | payment_gateway | document_store | mailer
    check: Check
    secrets: tuple[str, ...] = ()  # removed from the detail of a failure


def not_configured(component: str, detail: str) -> Probe:
    return Probe(component, lambda: (HealthStatus.NOT_CONFIGURED, detail))


def folder_probe(component: str, folder: Path | str, label: str) -> Probe:
    """A local folder is healthy when a file can be written in it (or in the nearest existing
    parent, for a folder the store creates on its first write)."""
    path = Path(folder)

    def check() -> tuple[HealthStatus, str]:
        target = path
        while not target.exists():
            if target.parent == target:
                raise FileNotFoundError(f"no existing parent of {path}")
            target = target.parent
        if not target.is_dir():
            raise NotADirectoryError(f"{target} is not a folder")
        fd, name = tempfile.mkstemp(prefix=".health-", dir=target)
        os.close(fd)
        os.unlink(name)
        suffix = "" if target == path else f" (created on first write, under {target})"
        return HealthStatus.UP, f"{label} {path} writable{suffix}"

    return Probe(component, check)


def smtp_probe(
    host: str,
    port: int,
    *,
    username: str | None,
    password: str | None,
    security: str,
    timeout: float,
    ca_file: str | None = None,
    component: str = "mailer",
) -> Probe:
    """Connect, EHLO, STARTTLS (or implicit TLS) and AUTH as the mailer does, then QUIT."""

    def check() -> tuple[HealthStatus, str]:
        mailer = SMTPMailer(host, port, username, password, security, timeout, ca_file=ca_file)  # type: ignore[arg-type]
        with mailer.session():
            pass
        auth = f"authenticated as {username}" if username else "no AUTH configured"
        return HealthStatus.UP, f"SMTP {host}:{port} ({security}), {auth}"

    return Probe(component, check, secrets=tuple(s for s in (password,) if s))


def s3_probe(
    bucket: str,
    *,
    endpoint_url: str | None,
    region: str,
    access_key_id: str | None,
    secret_access_key: str | None,
    timeout: float,
    component: str = "document_store",
) -> Probe:
    """``HEAD`` of the bucket with the store's credentials: reachable, signed, bucket there."""

    def check() -> tuple[HealthStatus, str]:
        client = s3_client(
            endpoint_url=endpoint_url,
            region=region,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            max_attempts=1,
            connect_timeout=timeout,
            read_timeout=timeout,
        )
        client.head_bucket(Bucket=bucket)
        return HealthStatus.UP, f"S3 bucket {bucket} at {endpoint_url or 'AWS ' + region}: HEAD ok"

    return Probe(component, check, secrets=tuple(s for s in (secret_access_key,) if s))


def stripe_probe(api_key: str, *, api_base: str | None, timeout: float, component: str = "payment_gateway") -> Probe:
    """One authenticated read, ``GET /v1/customers?limit=1``, without retries."""

    def check() -> tuple[HealthStatus, str]:
        client = stripe_client(api_key, api_base=api_base, timeout=timeout)
        client.raw_request("get", "/v1/customers", limit=1)
        return HealthStatus.UP, f"Stripe API at {api_base or 'api.stripe.com'}: key accepted"

    return Probe(component, check, secrets=(api_key,))


def _failure(exc: BaseException, secrets: tuple[str, ...]) -> str:
    text = Redactor(secrets)(f"{type(exc).__name__}: {exc}")
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 3] + "..."


def _timed(probe: Probe, clock: Callable[[], dt.datetime]) -> tuple[HealthStatus, str, float, dt.datetime]:
    checked_at = clock()
    started = time.monotonic()
    try:
        status, detail = probe.check()
    except Exception as exc:  # noqa: BLE001 - any failure of a probe is the component being down
        status, detail = HealthStatus.DOWN, _failure(exc, probe.secrets)
    return status, detail, (time.monotonic() - started) * 1000, checked_at


def run_probes(
    probes: Sequence[Probe], timeout: float, *, clock: Callable[[], dt.datetime] = utc_now
) -> list[HealthResult]:
    """Every probe at once; one without an answer ``timeout`` (+1 s of grace) after the start is
    ``down``. Results in the order of ``probes``."""
    if not probes:
        return []
    started_at, started = clock(), time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="health-probe")
    try:
        futures = [pool.submit(_timed, probe, clock) for probe in probes]
        results = []
        for probe, future in zip(probes, futures, strict=True):
            remaining = max(0.0, timeout + 1 - (time.monotonic() - started))
            try:
                status, detail, latency, checked_at = future.result(timeout=remaining)
            except concurrent.futures.TimeoutError:
                status, detail, checked_at = HealthStatus.DOWN, f"no answer within {timeout:g} s", started_at
                latency = (time.monotonic() - started) * 1000
            results.append(HealthResult(probe.component, status, round(latency, 1), detail, checked_at))
        return results
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a hung probe's thread ends with its socket timeout
