"""Collections test data: finalized invoices with a due date, payments, a reminders world on real servers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, insert, select, update

from billing_pipeline.clients.mailer import SMTPMailer
from billing_pipeline.clock import utc_now
from billing_pipeline.db import reference
from billing_pipeline.db.engine import get_engine
from billing_pipeline.db.schema import invoices, payments
from billing_pipeline.rendering.seller import Seller
from billing_pipeline.services.collections.policy import load_policy
from billing_pipeline.services.collections.reminders import ReminderSender
from billing_pipeline.services.notifications import (
    EmailChannel,
    NotificationChannel,
    NotificationDispatcher,
    SmsChannel,
)
from billing_pipeline_tests.builders import org, setup_database

UTC = dt.UTC
SELLER = Seller("Example Cloud Ltd", ("1 Example Street",), None, "billing@seller.test", "Pay by bank transfer.")


def add_finalized_invoice(
    engine, org_id: str, number: str, *, issued: dt.datetime, terms_days: int = 30, total_minor: int = 12_000,
    currency: str = "USD", period_key: str | None = None,
) -> int:  # fmt: skip
    """A finalized invoice as ``db.invoices.finalize`` leaves it (tax 20 % of the subtotal)."""
    subtotal = total_minor * 5 // 6
    period_start = (issued - dt.timedelta(days=1)).replace(day=1)
    now = utc_now()
    with engine.begin() as conn:
        return conn.execute(
            insert(invoices)
            .values(
                org_id=org_id,
                interval="monthly",
                period_key=period_key or period_start.date().isoformat(),
                period_start=period_start,
                period_end=issued,
                status="finalized",
                number=number,
                currency=currency,
                plan_code="starter",
                catalog_version=1,
                subtotal_minor=subtotal,
                tax_rate=Decimal("0.20"),
                tax_minor=total_minor - subtotal,
                total_minor=total_minor,
                usage={},
                issued_at=issued,
                due_at=issued + dt.timedelta(days=terms_days),
                finalized_at=issued,
                created_at=now,
                updated_at=now,
            )
            .returning(invoices.c.id)
        ).scalar_one()


def record_payment(
    engine, invoice_id: int, amount_minor: int, *, external_id: str, method: str = "bank_transfer"
) -> None:
    """A succeeded payment, as ``payments record`` will write it; a fully paid invoice becomes ``paid``."""
    with engine.begin() as conn:
        currency, total = conn.execute(
            select(invoices.c.currency, invoices.c.total_minor).where(invoices.c.id == invoice_id)
        ).one()
        conn.execute(
            insert(payments).values(
                invoice_id=invoice_id,
                amount_minor=amount_minor,
                currency=currency,
                method=method,
                external_id=external_id,
                status="succeeded",
                created_at=utc_now(),
            )
        )
        paid = conn.execute(
            select(func.sum(payments.c.amount_minor)).where(
                payments.c.invoice_id == invoice_id, payments.c.status == "succeeded"
            )
        ).scalar_one()
        if paid >= total:
            conn.execute(update(invoices).where(invoices.c.id == invoice_id).values(status="paid"))


def reminders_database(url: str, orgs) -> object:
    setup_database(url)
    engine = get_engine(url)
    reference.upsert_organizations(engine, orgs)
    return engine


def smtp_sender(
    engine, smtp, *, port: int | None = None, max_attempts: int = 3, policy=None, sms=None
) -> ReminderSender:
    """Reminders through the SMTP test server (``port``: another port, e.g. one nothing listens on),
    and through ``sms`` (an ``SmsSender``) when given."""
    mailer = SMTPMailer(
        smtp.host, port or smtp.port, smtp.username, smtp.password, "starttls", 5.0, ca_file=smtp.cert_path
    )
    channels: dict[str, NotificationChannel] = {
        "email": EmailChannel(mailer, "billing@seller.test", "seller.test", reply_to=SELLER.email)
    }
    if sms is not None:
        channels["sms"] = SmsChannel(sms)
    dispatcher = NotificationDispatcher(engine, channels, max_attempts=max_attempts)
    return ReminderSender(policy or load_policy(), dispatcher, SELLER)


def customer(org_id: str, **changes):
    import dataclasses

    return dataclasses.replace(org(org_id), **changes)


def at(day: str, time: str = "09:00") -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{time}:00+00:00")
