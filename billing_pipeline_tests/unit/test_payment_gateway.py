"""The payment gateway without network: decline classification, result types, NullGateway, FakeGateway."""

from __future__ import annotations

import datetime as dt

import pytest

from billing_pipeline.clients.errors import GatewayTotalMismatch, PermanentGatewayError, TransientGatewayError
from billing_pipeline.clients.payments import (
    ChargeGateway,
    ChargeResult,
    ChargeStatus,
    DeclineKind,
    GatewayInvoiceMirror,
    LifecycleGateway,
    NullGateway,
    PaymentGateway,
    PaymentStatus,
    StripeGateway,
    charge_key,
    classify_decline,
)
from billing_pipeline.domain.model import Invoice
from billing_pipeline_tests.builders import finalized_invoice
from billing_pipeline_tests.fake_gateway import FakeGateway

UTC = dt.UTC


def invoice(number: str | None = "INV-2026-000007", total: str = "120.00") -> Invoice:
    """A tax-free invoice of *total* (one fee line)."""
    return finalized_invoice(number, "org_7", fee=total, usage="0", tax_rate="0")


# Stripe's decline-code table: the next step "use another card / new card" -> hard; "try again" -> soft.
@pytest.mark.parametrize(
    ("decline_code", "advice_code", "kind"),
    [
        ("generic_decline", None, DeclineKind.SOFT),
        ("insufficient_funds", None, DeclineKind.SOFT),
        ("do_not_honor", None, DeclineKind.SOFT),
        ("processing_error", None, DeclineKind.SOFT),
        ("try_again_later", None, DeclineKind.SOFT),
        ("card_velocity_exceeded", None, DeclineKind.SOFT),
        ("lost_card", None, DeclineKind.HARD),
        ("stolen_card", None, DeclineKind.HARD),
        ("pickup_card", None, DeclineKind.HARD),
        ("expired_card", None, DeclineKind.HARD),
        ("fraudulent", None, DeclineKind.HARD),
        ("incorrect_number", None, DeclineKind.HARD),
        ("revocation_of_authorization", None, DeclineKind.HARD),
        ("do_not_try_again", None, DeclineKind.HARD),
        ("no_payment_method", None, DeclineKind.HARD),
        ("authentication_required", None, DeclineKind.NEEDS_CUSTOMER),
        ("invoice_payment_intent_requires_action", None, DeclineKind.NEEDS_CUSTOMER),
        ("generic_decline", "do_not_try_again", DeclineKind.HARD),
        ("insufficient_funds", "confirm_card_data", DeclineKind.HARD),
        ("lost_card", "try_again_later", DeclineKind.HARD),
        ("insufficient_funds", "try_again_later", DeclineKind.SOFT),
        ("some_future_code", None, DeclineKind.SOFT),
        (None, None, DeclineKind.SOFT),
        ("  Lost_Card ", None, DeclineKind.HARD),
    ],
)
def test_classify_decline(decline_code, advice_code, kind):
    assert classify_decline(decline_code, advice_code) is kind


def test_charge_result_retryable_only_for_soft_declines():
    base = dict(amount_minor=100, currency="EUR", idempotency_key="k")
    assert ChargeResult(ChargeStatus.DECLINED, decline_code="insufficient_funds", **base).retryable
    assert not ChargeResult(ChargeStatus.DECLINED, decline_code="lost_card", hard_decline=True, **base).retryable
    assert not ChargeResult(ChargeStatus.REQUIRES_ACTION, **base).retryable
    assert not ChargeResult(ChargeStatus.SUCCEEDED, **base).retryable


@pytest.mark.parametrize(
    ("status", "decline", "final", "failed"),
    [
        ("succeeded", None, True, False),
        ("canceled", None, True, True),
        ("processing", None, False, False),
        ("requires_payment_method", None, False, False),
        ("requires_payment_method", "insufficient_funds", False, True),
        ("requires_action", None, False, False),
    ],
)
def test_payment_status_only_succeeded_and_canceled_are_final(status, decline, final, failed):
    ps = PaymentStatus("pi_1", status, 100, "EUR", decline)
    assert (ps.final, ps.failed) == (final, failed)


def test_charge_key_comes_from_our_ids():
    assert charge_key("INV-2026-000007", 3) == "charge-INV-2026-000007-3"
    with pytest.raises(ValueError):
        charge_key("INV-2026-000007", 0)


def test_null_gateway_never_reports_money_it_did_not_take():
    gw = NullGateway()
    assert isinstance(gw, PaymentGateway)
    result = gw.charge_invoice(invoice(), 1, idempotency_prefix="billing")
    assert (result.status, result.decline_code, result.hard_decline) == (
        ChargeStatus.DECLINED,
        "no_payment_gateway",
        True,
    )
    assert (result.amount_minor, result.idempotency_key) == (12000, "billing-charge-INV-2026-000007-1")
    assert gw.find_charge(invoice(), 1, idempotency_prefix="billing") is None
    assert gw.invoices_paid_out_of_band(dt.datetime(2026, 11, 1, tzinfo=UTC)) == []
    assert gw.void_invoice(invoice(), idempotency_key="void-1").status == "skipped"
    assert gw.mark_paid_out_of_band(invoice(), idempotency_key="paid-1").status == "skipped"
    assert gw.create_credit_note(invoice(), 500, "CN-1", idempotency_key="cn-1").status == "skipped"
    mirror = GatewayInvoiceMirror(gw)
    assert mirror.void_invoice(invoice(), idempotency_key="void-1") is None  # nothing mirrored: "skipped"
    assert mirror.mark_uncollectible(invoice(), idempotency_key="uncollectible-1") is None
    with pytest.raises(PermanentGatewayError):
        gw.payment_status("pi_1")
    with pytest.raises(ValueError):
        gw.charge_invoice(invoice(number=None), 1, idempotency_prefix="billing")


def test_every_implementation_satisfies_the_protocols():
    from billing_pipeline.services.lifecycle_mirror import InvoiceMirror

    for gw in (NullGateway(), StripeGateway(object()), FakeGateway()):
        assert isinstance(gw, PaymentGateway) and isinstance(gw, ChargeGateway) and isinstance(gw, LifecycleGateway)
        assert isinstance(GatewayInvoiceMirror(gw), InvoiceMirror)


def test_fake_gateway_replays_keys_and_refuses_other_parameters():
    gw, inv = FakeGateway(), invoice()
    gw.script(inv.number, "insufficient_funds", "lost_card")
    first = gw.charge_invoice(inv, 1, idempotency_prefix="b")
    assert (first.status, first.retryable) == (ChargeStatus.DECLINED, True)
    assert gw.charge_invoice(inv, 1, idempotency_prefix="b") == first
    with pytest.raises(PermanentGatewayError) as err:
        gw.charge_invoice(inv, 1, idempotency_prefix="b", payment_method="pm_other")
    assert err.value.code == "idempotency_error"
    assert gw.charge_invoice(inv, 2, idempotency_prefix="b").hard_decline
    third = gw.charge_invoice(inv, 3, idempotency_prefix="b", amount_minor=12000)
    assert third.status is ChargeStatus.SUCCEEDED and not third.already_paid
    assert gw.charge_invoice(inv, 4, idempotency_prefix="b").already_paid


def test_fake_gateway_lost_answer_is_found_once():
    gw, inv = FakeGateway(), invoice()
    gw.lose_next_answer = True
    with pytest.raises(TransientGatewayError):
        gw.charge_invoice(inv, 1, idempotency_prefix="b")
    found = gw.find_charge(inv, 1, idempotency_prefix="b")
    assert found.status is ChargeStatus.SUCCEEDED and found.gateway_payment_id == "pi_fake_1"
    assert gw.charge_invoice(inv, 1, idempotency_prefix="b").gateway_payment_id == "pi_fake_1"
    assert len(gw.payments) == 1


def test_fake_gateway_processing_settles_and_outside_payments_are_listed():
    gw, inv, other = FakeGateway(), invoice(), invoice("INV-2026-000008", "50.00")
    gw.script(inv.number, "processing")
    pending = gw.charge_invoice(inv, 1, idempotency_prefix="b")
    assert pending.status is ChargeStatus.PROCESSING and not gw.payment_status(pending.gateway_payment_id).final
    assert gw.charge_invoice(inv, 2, idempotency_prefix="b").gateway_payment_id == pending.gateway_payment_id
    gw.settle(pending.gateway_payment_id)
    assert gw.payment_status(pending.gateway_payment_id).succeeded
    gw.sync_invoice(other, None, idempotency_prefix="b")
    gw.pay_outside(other.number)
    paid = {p.number: p for p in gw.invoices_paid_out_of_band(dt.datetime(2026, 11, 1, tzinfo=UTC))}
    assert paid[other.number].paid_out_of_band and paid[other.number].amount_paid_minor == 5000
    assert not paid[inv.number].paid_out_of_band and paid[inv.number].gateway_payment_ids == (
        pending.gateway_payment_id,
    )


def test_fake_gateway_lifecycle_and_amount_guard():
    gw, inv = FakeGateway(), invoice()
    gw.create_credit_note(inv, 2000, "CN-1", idempotency_key="cn-1")
    assert gw.create_credit_note(inv, 2000, "CN-1", idempotency_key="cn-1").amount_minor == 2000
    with pytest.raises(GatewayTotalMismatch):
        gw.charge_invoice(inv, 1, idempotency_prefix="b", amount_minor=12000)
    assert gw.mark_uncollectible(inv, idempotency_key="u-1").status == "uncollectible"
    assert gw.void_invoice(inv, idempotency_key="v-1").status == "void"
    with pytest.raises(PermanentGatewayError):
        gw.charge_invoice(inv, 1, idempotency_prefix="b")


def test_decline_code_sets_are_disjoint_and_classified_as_named():
    from billing_pipeline.clients.payments.declines import HARD_DECLINE_CODES, NEEDS_CUSTOMER_CODES, SOFT_DECLINE_CODES

    assert not (HARD_DECLINE_CODES & SOFT_DECLINE_CODES) and not (NEEDS_CUSTOMER_CODES & HARD_DECLINE_CODES)
    assert {classify_decline(c) for c in SOFT_DECLINE_CODES} == {DeclineKind.SOFT}
    assert {classify_decline(c) for c in HARD_DECLINE_CODES} == {DeclineKind.HARD}
