"""Auto-charge test worlds: invoices in PostgreSQL mirrored to the Stripe test server, mail via SMTP."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import insert, select

from billing_pipeline.clients.payments import StripeGateway, stripe_client
from billing_pipeline.db import reference
from billing_pipeline.db.invoices import load_invoices
from billing_pipeline.db.schema import invoice_lines, invoices
from billing_pipeline.domain.charges import retry_days_from_policy
from billing_pipeline.services.collections.charge_notices import NoticeSender
from billing_pipeline.services.collections.charges import ChargeOptions
from billing_pipeline.services.collections.policy import load_policy
from billing_pipeline_tests.dunning_builders import SELLER, add_finalized_invoice, smtp_sender

PREFIX = "test"
OPTIONS = ChargeOptions(PREFIX, retry_days_from_policy(load_policy()), max_attempts=4)


def gateway_for(stripe_server) -> StripeGateway:
    return StripeGateway(stripe_client(stripe_server.api_key, api_base=stripe_server.api_base, timeout=10))


def notice_sender(engine, smtp) -> NoticeSender:
    return NoticeSender(smtp_sender(engine, smtp).dispatcher, SELLER)


def add_charged_invoice(engine, org_id: str, number: str, *, issued: dt.datetime, terms_days: int = 14) -> int:
    """``add_finalized_invoice`` with its one line (the gateway mirrors lines: subtotal + tax = total)."""
    invoice_id = add_finalized_invoice(engine, org_id, number, issued=issued, terms_days=terms_days)
    with engine.begin() as conn:
        subtotal = conn.execute(select(invoices.c.subtotal_minor).where(invoices.c.id == invoice_id)).scalar_one()
        conn.execute(
            insert(invoice_lines).values(
                invoice_id=invoice_id, line_number=1, charge_code="base", description="Starter plan",
                metric_code=None, quantity="1", unit_price=None, amount_minor=subtotal, tiers=[],
            )
        )  # fmt: skip
    return invoice_id


def mirror(engine, gateway, stripe_server, invoice_id: int, org_id: str, payment_method: str | None = "pm_card_visa"):
    """Sync the invoice to the Stripe server (as the delivery's stripe channel does) and give its customer
    ``payment_method`` as default; returns (Stripe invoice id, Stripe customer id)."""
    invoice = load_invoices(engine, [invoice_id])[invoice_id].invoice
    org = reference.get_organizations(engine, [org_id])[org_id]
    synced = gateway.sync_invoice(invoice, org, idempotency_prefix=PREFIX)
    customer = stripe_server.get(synced.external_id)["customer"]
    if payment_method:
        client = stripe_server.client()
        pm = client.v1.payment_methods.attach(payment_method, params={"customer": customer})
        client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": pm.id}})
    return synced.external_id, customer


def pay_requests(stripe_server) -> list:
    return [r for r in stripe_server.requests if r.method == "POST" and r.path.endswith("/pay")]


def day(iso: str, hour: int = 6) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{iso}T{hour:02d}:00:00+00:00")
