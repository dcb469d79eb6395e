"""The report e-mail ledger (``report_deliveries``): one row per report x partition.

Same claim pattern as ``db.deliveries``: ``claim`` inserts the row ``pending`` (or moves a
``failed`` one back to ``pending`` with ``attempts + 1``) and records the deterministic
Message-ID in the same committed transaction, *before* the SMTP call; ``mark_sent`` right after
it. A claim only wins if the row still has the attempt count read, so two runs cannot both
send. A row found ``pending`` (a run died mid-send, or one is sending now) or ``ambiguous`` is
never sent again by a run; after ``MAX_ATTEMPTS`` failures the row is ``dead`` (dead letter).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, select, update

from billing_pipeline.clock import utc_now
from billing_pipeline.db.ledger import claim_row
from billing_pipeline.db.schema import report_deliveries

MAX_ATTEMPTS = 5
_r = report_deliveries.c


@dataclass(frozen=True)
class ReportDelivery:
    report: str
    partition_key: str
    status: str
    attempts: int
    message_id: str | None
    last_error: str | None
    sent_at: dt.datetime | None


def get(engine: Engine, report: str, partition_key: str) -> ReportDelivery | None:
    with engine.connect() as conn:
        r = conn.execute(
            select(report_deliveries).where(_r.report == report, _r.partition_key == partition_key)
        ).first()
    if r is None:
        return None
    return ReportDelivery(r.report, r.partition_key, r.status, r.attempts, r.message_id, r.last_error, r.sent_at)


def claim(engine: Engine, report: str, partition_key: str, seen: ReportDelivery | None, message_id: str,
          recipients: str) -> bool:  # fmt: skip
    """``pending`` with one more attempt and the Message-ID about to be sent; False: lost the race
    (or the row is not ``failed``: succeeded, pending, ambiguous, dead)."""
    with engine.begin() as conn:
        attempt = claim_row(
            conn,
            report_deliveries,
            {"report": report, "partition_key": partition_key},
            seen_attempts=None if seen is None else seen.attempts,
            values={"message_id": message_id, "recipients": recipients},
        )
    return attempt is not None


def _finish(engine: Engine, report: str, partition_key: str, **values) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(report_deliveries)
            .where(_r.report == report, _r.partition_key == partition_key)
            .values(updated_at=utc_now(), **values)
        )


def mark_sent(engine: Engine, report: str, partition_key: str) -> None:
    _finish(engine, report, partition_key, status="succeeded", sent_at=utc_now())


def mark_failed(engine: Engine, report: str, partition_key: str, error: str, *, ambiguous: bool = False) -> str:
    """``failed`` (retried by the next run), ``dead`` after ``MAX_ATTEMPTS``, or ``ambiguous``."""
    row = get(engine, report, partition_key)
    status = "ambiguous" if ambiguous else "dead" if row and row.attempts >= MAX_ATTEMPTS else "failed"
    _finish(engine, report, partition_key, status=status, last_error=error[:2000])
    return status
