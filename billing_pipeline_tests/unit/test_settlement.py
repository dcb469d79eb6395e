"""domain.settlement: the zero-total policy and the one payment text, every combination."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from billing_pipeline.domain.model import BillingInterval, Invoice, InvoiceStatus
from billing_pipeline.domain.settlement import (
    ZERO_TOTAL_SKIP_REASON,
    PaymentKind,
    ZeroTotalPolicy,
    gateway_skip_reason,
    payment_text,
    zero_total_status,
)
from billing_pipeline.settings import Settings, SettingsError
from billing_pipeline_tests.unit.examples import organization, utc

INSTRUCTIONS = "Bank transfer to IBAN GB00 EXMP 0000 0000 0000 00\n\nBIC EXMPGB2L"
FINALIZE_PAID, FINALIZE, SKIP = ZeroTotalPolicy.FINALIZE_PAID, ZeroTotalPolicy.FINALIZE, ZeroTotalPolicy.SKIP
FINALIZED, PAID, VOID, DRAFT = InvoiceStatus.FINALIZED, InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.DRAFT


DUE = utc(2026, 11, 15)


def invoice(total: str = "45.19", status=FINALIZED, due: dt.datetime | None = DUE, currency="USD"):
    amount = D(total)
    return Invoice(
        organization_id="org_1",
        period_start=utc(2026, 10, 1),
        period_end=utc(2026, 11, 1),
        interval=BillingInterval.MONTHLY,
        currency=currency,
        lines=(),
        subtotal=amount,
        tax_rate=D("0"),
        tax=D("0"),
        total=amount,
        status=status,
        number=None if status is DRAFT else "INV-2026-000001",
        due_at=due,
    )


# --- zero-total policy -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("total", "policy", "status"),
    [
        ("0", FINALIZE_PAID, PAID),
        ("0", FINALIZE, FINALIZED),
        ("0", SKIP, None),
        ("0.00", "finalize_paid", PAID),  # the setting's text is accepted
        ("0.01", FINALIZE_PAID, FINALIZED),
        ("0.01", SKIP, FINALIZED),
        ("-5.00", SKIP, FINALIZED),  # a negative total is not zero
        ("1", FINALIZE, FINALIZED),
    ],
)
def test_zero_total_status(total, policy, status):
    assert zero_total_status(D(total), policy) is status


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError):
        zero_total_status(D(0), "drop")


@pytest.mark.parametrize(
    ("inv", "reason"),
    [
        (invoice("0.00", PAID), "zero total: paid at finalization"),
        (invoice("10.00", PAID), "invoice is paid"),
        (invoice("10.00", VOID), "invoice is void"),
        (invoice("0.00", FINALIZED), None),  # ZERO_TOTAL_INVOICES=finalize: synced as today
        (invoice("10.00", FINALIZED), None),
    ],
)
def test_gateway_skip_reason(inv, reason):
    got = gateway_skip_reason(inv)
    assert got is None if reason is None else got.startswith(reason)


def test_settings_default_and_validation():
    assert Settings.from_env({"BILLING_HOME": "/tmp/x"}).zero_total_invoices == "finalize_paid"
    assert Settings.from_env({"BILLING_HOME": "/tmp/x", "ZERO_TOTAL_INVOICES": " Skip "}).zero_total_invoices == "skip"
    with pytest.raises(SettingsError, match="ZERO_TOTAL_INVOICES: must be one of finalize_paid, finalize, skip"):
        Settings.from_env({"BILLING_HOME": "/tmp/x", "ZERO_TOTAL_INVOICES": "drop"})
    assert "ZERO_TOTAL_INVOICES=skip" in ZERO_TOTAL_SKIP_REASON


# --- payment text: auto-pay x gateway x total x status -----------------------------------------
AUTO_LINE = "This invoice will be charged automatically to the payment method on file on 2026-11-15."


@pytest.mark.parametrize(
    ("auto_pay", "charges", "inv", "kind", "lines", "subject"),
    [
        (True, True, invoice(), PaymentKind.AUTOMATIC_CHARGE, (AUTO_LINE,), "45.19 USD due 2026-11-15"),
        (True, False, invoice(), PaymentKind.INSTRUCTIONS, None, "45.19 USD due 2026-11-15"),
        (False, True, invoice(), PaymentKind.INSTRUCTIONS, None, "45.19 USD due 2026-11-15"),
        (False, False, invoice(), PaymentKind.INSTRUCTIONS, None, "45.19 USD due 2026-11-15"),
        *[
            (
                auto,
                charges,
                invoice("0.00", PAID),
                PaymentKind.NOTHING_TO_PAY,
                ("Nothing to pay: the total of this invoice is 0.00 USD and is marked paid.",),
                "0.00 USD, nothing to pay",
            )
            for auto in (True, False)
            for charges in (True, False)
        ],
        (
            True,
            True,
            invoice("0", FINALIZED, currency="JPY"),  # ZERO_TOTAL_INVOICES=finalize
            PaymentKind.NOTHING_TO_PAY,
            ("Nothing to pay: the total of this invoice is 0 JPY.",),
            "0 JPY, nothing to pay",
        ),
        (
            True,
            True,
            invoice("45.19", PAID),
            PaymentKind.NOTHING_TO_PAY,
            ("Nothing to pay: this invoice of 45.19 USD has been paid.",),
            "45.19 USD, paid",
        ),
        (False, False, invoice("45.19", VOID), PaymentKind.NOTHING_TO_PAY, None, "45.19 USD, void"),
    ],
)
def test_payment_text(auto_pay, charges, inv, kind, lines, subject):
    text = payment_text(inv, organization(auto_pay=auto_pay), charges_automatically=charges, instructions=INSTRUCTIONS)
    assert text.kind is kind and text.subject == subject
    assert text.asks_for_payment is (kind is PaymentKind.INSTRUCTIONS)
    if kind is PaymentKind.INSTRUCTIONS:
        assert text.lines == ("Bank transfer to IBAN GB00 EXMP 0000 0000 0000 00", "BIC EXMPGB2L")
        assert text.summary == "The amount due is 45.19 USD, payable by 2026-11-15."
    elif lines is not None:
        assert text.lines == lines
    every_word = " ".join((*text.lines, text.summary, text.subject))
    assert ("automatically" in every_word) is (kind is PaymentKind.AUTOMATIC_CHARGE)
    assert ("IBAN" in every_word) is (kind is PaymentKind.INSTRUCTIONS)


def test_payment_text_without_a_due_date():
    draft = invoice(status=DRAFT, due=None)
    auto = payment_text(draft, organization(auto_pay=True), charges_automatically=True, instructions=INSTRUCTIONS)
    assert auto.lines == ("This invoice will be charged automatically to the payment method on file when it is due.",)
    transfer = payment_text(draft, organization(), charges_automatically=True, instructions=INSTRUCTIONS)
    assert transfer.summary == "The amount due is 45.19 USD, payable on receipt." and transfer.subject == "45.19 USD"
