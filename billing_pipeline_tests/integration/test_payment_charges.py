"""``StripeGateway`` charges, payment status and lifecycle against the Stripe-compatible server.

Every test mirrors a real invoice with ``sync_invoice`` first, gives the customer a Stripe test
payment method, and drives the real client (``stripe_client`` + ``StripeGateway``): success, each
decline of Stripe's test cards, a bank debit that is ``processing`` then settles, a charge whose
answer is lost (found once, charged once), 5xx retried with the same key, a key reused with other
parameters, payments made outside, void / uncollectible / credit notes.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import pytest

from billing_pipeline.clients.errors import GatewayTotalMismatch, PermanentGatewayError, TransientGatewayError
from billing_pipeline.clients.payments import ChargeStatus, GatewayInvoiceMirror, StripeGateway, stripe_client
from billing_pipeline.domain.credit_notes import CreditNote
from billing_pipeline_tests.builders import finalized_invoice, org

pytestmark = pytest.mark.integration

UTC = dt.UTC
PREFIX = "test"
TOTAL_MINOR = 13626  # 113.55 + 20 % tax = 136.26


@pytest.fixture
def gateway(stripe_server):
    client = stripe_client(stripe_server.api_key, api_base=stripe_server.api_base, timeout=10)
    return StripeGateway(client)


def mirrored(gateway, stripe_server, number: str, payment_method: str | None = "pm_card_visa", org_id: str = "org_pay"):
    """(our invoice, its Stripe invoice id, the customer id) with *payment_method* as the customer's default."""
    invoice = finalized_invoice(number, org_id)
    synced = gateway.sync_invoice(invoice, org(org_id, auto_pay=True), idempotency_prefix=PREFIX)
    customer = stripe_server.get(synced.external_id)["customer"]
    if payment_method:
        client = stripe_server.client()
        pm = client.v1.payment_methods.attach(payment_method, params={"customer": customer})
        client.v1.customers.update(customer, params={"invoice_settings": {"default_payment_method": pm.id}})
    return invoice, synced.external_id, customer


def pay_requests(stripe_server, stripe_id: str) -> list:
    return [r for r in stripe_server.requests if r.method == "POST" and r.path == f"/v1/invoices/{stripe_id}/pay"]


def test_charge_succeeds_with_the_default_card(gateway, stripe_server):
    invoice, stripe_id, _ = mirrored(gateway, stripe_server, "INV-C-0001")
    before = len(stripe_server.requests)
    result = gateway.charge_invoice(
        invoice, 1, idempotency_prefix=PREFIX, amount_minor=TOTAL_MINOR, external_id=stripe_id
    )
    # Two requests per charge: the invoice (payments and customer expanded), then pay.
    assert [(r.method, r.path) for r in stripe_server.requests[before:]] == [
        ("GET", f"/v1/invoices/{stripe_id}"),
        ("POST", f"/v1/invoices/{stripe_id}/pay"),
    ]
    assert result.status is ChargeStatus.SUCCEEDED and not result.already_paid
    assert (result.amount_minor, result.currency) == (TOTAL_MINOR, "USD")
    assert result.idempotency_key == "test-charge-INV-C-0001-1"
    assert result.gateway_invoice_id == stripe_id and result.gateway_payment_id.startswith("pi_")
    assert stripe_server.get(stripe_id)["status"] == "paid"
    assert [r.idempotency_key for r in pay_requests(stripe_server, stripe_id)] == ["test-charge-INV-C-0001-1"]
    status = gateway.payment_status(result.gateway_payment_id)
    assert status.succeeded and status.final and status.amount_minor == TOTAL_MINOR


@pytest.mark.parametrize(
    ("token", "status", "decline_code", "hard"),
    [
        ("pm_card_chargeDeclined", ChargeStatus.DECLINED, "generic_decline", False),
        ("pm_card_chargeDeclinedInsufficientFunds", ChargeStatus.DECLINED, "insufficient_funds", False),
        ("pm_card_chargeDeclinedProcessingError", ChargeStatus.DECLINED, "processing_error", False),
        ("pm_card_chargeDeclinedLostCard", ChargeStatus.DECLINED, "lost_card", True),
        ("pm_card_chargeDeclinedStolenCard", ChargeStatus.DECLINED, "stolen_card", True),
        ("pm_card_chargeDeclinedExpiredCard", ChargeStatus.DECLINED, "expired_card", True),
        ("pm_card_chargeDeclinedFraudulent", ChargeStatus.DECLINED, "fraudulent", True),
        ("pm_card_authenticationRequired", ChargeStatus.REQUIRES_ACTION, "authentication_required", False),
    ],
)
def test_each_test_card_decline(gateway, stripe_server, token, status, decline_code, hard):
    invoice, stripe_id, _ = mirrored(gateway, stripe_server, "INV-D-0001", token)
    result = gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX)
    assert (result.status, result.decline_code, result.hard_decline) == (status, decline_code, hard)
    assert result.retryable is (status is ChargeStatus.DECLINED and not hard)
    assert result.amount_minor == TOTAL_MINOR and result.message
    assert result.gateway_payment_id.startswith("pi_") and result.hosted_url.endswith(stripe_id)
    after = stripe_server.get(stripe_id)
    assert (after["status"], after["attempt_count"], after["amount_paid"]) == ("open", 1, 0)
    pi = gateway.payment_status(result.gateway_payment_id)
    assert pi.status == "requires_payment_method" and pi.failed and not pi.final
    assert gateway.find_charge(invoice, 1, idempotency_prefix=PREFIX) is None


def test_no_payment_method_is_a_hard_decline_without_a_charge(gateway, stripe_server):
    invoice, stripe_id, _ = mirrored(gateway, stripe_server, "INV-N-0001", payment_method=None)
    result = gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX)
    assert (result.status, result.decline_code, result.hard_decline) == (
        ChargeStatus.DECLINED,
        "no_payment_method",
        True,
    )
    assert pay_requests(stripe_server, stripe_id) == [] and stripe_server.count("payment_intents") == 0


def test_declined_twice_then_succeeds_and_a_replayed_attempt_keeps_its_answer(gateway, stripe_server):
    invoice, stripe_id, customer = mirrored(gateway, stripe_server, "INV-R-0001")
    stripe_server.decline_next(customer, 2, "insufficient_funds")
    first = gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX)
    second = gateway.charge_invoice(invoice, 2, idempotency_prefix=PREFIX)
    assert [first.decline_code, second.decline_code] == ["insufficient_funds", "insufficient_funds"]
    again = gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX)  # a re-run of attempt 1: replayed
    assert again == first and stripe_server.count("payment_intents") == 2
    third = gateway.charge_invoice(invoice, 3, idempotency_prefix=PREFIX)
    assert third.status is ChargeStatus.SUCCEEDED and stripe_server.get(stripe_id)["attempt_count"] == 3
    assert stripe_server.count("payment_intents", status="succeeded") == 1


def test_decline_next_over_http_test_control(gateway, stripe_server):
    invoice, _, customer = mirrored(gateway, stripe_server, "INV-H-0001")
    stripe_server.client().raw_request(
        "post", "/_test/decline_next", target=customer, count=1, decline_code="lost_card"
    )
    result = gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX)
    assert (result.decline_code, result.hard_decline) == ("lost_card", True)
    assert gateway.charge_invoice(invoice, 2, idempotency_prefix=PREFIX).status is ChargeStatus.SUCCEEDED


def test_bank_debit_is_processing_then_settles(gateway, stripe_server):
    invoice, stripe_id, _ = mirrored(gateway, stripe_server, "INV-P-0001", "pm_usBankAccount")
    result = gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX)
    assert result.status is ChargeStatus.PROCESSING and result.amount_minor == TOTAL_MINOR
    pending = gateway.payment_status(result.gateway_payment_id)
    assert pending.status == "processing" and not pending.final and not pending.failed
    # Another attempt while it processes charges nothing: it reports the same payment.
    assert gateway.charge_invoice(invoice, 2, idempotency_prefix=PREFIX).gateway_payment_id == result.gateway_payment_id
    assert stripe_server.count("payment_intents") == 1 and stripe_server.get(stripe_id)["status"] == "open"
    stripe_server.settle(result.gateway_payment_id)
    settled = gateway.payment_status(result.gateway_payment_id)
    assert settled.succeeded and settled.final and settled.amount_minor == TOTAL_MINOR
    found = gateway.find_charge(invoice, 1, idempotency_prefix=PREFIX)
    assert found.status is ChargeStatus.SUCCEEDED and found.gateway_payment_id == result.gateway_payment_id


def test_bank_debit_that_fails_leaves_the_invoice_open(gateway, stripe_server):
    invoice, stripe_id, _ = mirrored(gateway, stripe_server, "INV-P-0002", "pm_usBankAccount")
    result = gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX)
    stripe_server.client().raw_request(
        "post", f"/_test/payment_intents/{result.gateway_payment_id}/settle", outcome="failed"
    )
    failed = gateway.payment_status(result.gateway_payment_id)
    assert failed.failed and not failed.final and failed.decline_code == "insufficient_funds"
    assert stripe_server.get(stripe_id)["status"] == "open"
    assert gateway.find_charge(invoice, 1, idempotency_prefix=PREFIX) is None


def test_processing_settles_by_the_server_clock(gateway, stripe_server):
    now = [1_800_000_000.0]
    stripe_server.clock, saved = (lambda: now[0]), stripe_server.clock
    try:
        stripe_server.processing_seconds = 3 * 86400
        invoice, _, _ = mirrored(gateway, stripe_server, "INV-P-0003", "pm_usBankAccount")
        pid = gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX).gateway_payment_id
        now[0] += 2 * 86400
        assert gateway.payment_status(pid).status == "processing"
        now[0] += 86400
        assert gateway.payment_status(pid).succeeded
    finally:
        stripe_server.clock = saved


def test_answer_lost_after_the_charge_is_found_once(gateway, stripe_server):
    """The process dies (or the answer is lost) between Stripe's charge and our ledger write."""
    invoice, stripe_id, _ = mirrored(gateway, stripe_server, "INV-L-0001")
    stripe_server.fail_next(1, 500, f"/v1/invoices/{stripe_id}/pay", after=True)
    with pytest.raises(TransientGatewayError):
        gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX)
    found = gateway.find_charge(invoice, 1, idempotency_prefix=PREFIX)
    assert found.status is ChargeStatus.SUCCEEDED and found.amount_minor == TOTAL_MINOR
    retried = gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX)
    assert retried.gateway_payment_id == found.gateway_payment_id and retried.already_paid
    stripe_server.expire_idempotency_keys()  # a day later: the invoice's own state still says paid
    later = gateway.charge_invoice(invoice, 2, idempotency_prefix=PREFIX)
    assert later.already_paid and later.gateway_payment_id == found.gateway_payment_id
    assert stripe_server.count("payment_intents") == 1 and len(pay_requests(stripe_server, stripe_id)) == 1


def test_5xx_before_the_charge_is_retried_with_the_same_key(gateway, stripe_server):
    invoice, stripe_id, _ = mirrored(gateway, stripe_server, "INV-F-0001")
    stripe_server.fail_next(2, 503, f"/v1/invoices/{stripe_id}/pay")
    for _ in range(2):
        with pytest.raises(TransientGatewayError) as err:
            gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX)
        assert err.value.transient and err.value.status == 503
    result = gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX)
    assert result.status is ChargeStatus.SUCCEEDED
    keys = {r.idempotency_key for r in pay_requests(stripe_server, stripe_id)}
    assert keys == {"test-charge-INV-F-0001-1"} and len(pay_requests(stripe_server, stripe_id)) == 3
    assert stripe_server.count("payment_intents") == 1


def test_gateway_down_is_transient(gateway, stripe_server):
    invoice, _, _ = mirrored(gateway, stripe_server, "INV-F-0002")
    stripe_server.down()
    try:
        with pytest.raises(TransientGatewayError):
            gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX)
    finally:
        stripe_server.up()
    assert stripe_server.count("payment_intents") == 0
    assert gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX).status is ChargeStatus.SUCCEEDED


def test_same_attempt_with_another_payment_method_is_refused(gateway, stripe_server):
    invoice, _, customer = mirrored(gateway, stripe_server, "INV-K-0001", "pm_card_chargeDeclined")
    assert gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX).status is ChargeStatus.DECLINED
    other = stripe_server.client().v1.payment_methods.attach("pm_card_visa", params={"customer": customer})
    with pytest.raises(PermanentGatewayError) as err:
        gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX, payment_method=other.id)
    assert err.value.code == "idempotency_error" and not err.value.transient
    result = gateway.charge_invoice(invoice, 2, idempotency_prefix=PREFIX, payment_method=other.id)
    assert result.status is ChargeStatus.SUCCEEDED


def test_amount_other_than_stripe_remaining_is_never_charged(gateway, stripe_server):
    invoice, stripe_id, _ = mirrored(gateway, stripe_server, "INV-M-0001")
    with pytest.raises(GatewayTotalMismatch) as err:
        gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX, amount_minor=TOTAL_MINOR - 1)
    assert err.value.difference_minor == 1
    assert pay_requests(stripe_server, stripe_id) == []


def test_invoices_paid_outside_are_listed_with_amounts(gateway, stripe_server):
    client = stripe_server.client()
    band, band_id, _ = mirrored(gateway, stripe_server, "INV-O-0001", org_id="org_a")
    hosted, hosted_id, _ = mirrored(gateway, stripe_server, "INV-O-0002", org_id="org_b")
    mirrored(gateway, stripe_server, "INV-O-0003", org_id="org_c")  # stays open
    client.v1.invoices.pay(band_id, params={"paid_out_of_band": True})
    client.v1.invoices.pay(hosted_id, params={"off_session": False})  # the customer on the hosted page
    since = dt.datetime.fromtimestamp(stripe_server.clock() - 3600, tz=UTC)
    paid = {p.number: p for p in gateway.invoices_paid_out_of_band(since)}
    assert set(paid) == {"INV-O-0001", "INV-O-0002"}
    assert paid["INV-O-0001"].paid_out_of_band and paid["INV-O-0001"].gateway_payment_ids == ()
    assert not paid["INV-O-0002"].paid_out_of_band and paid["INV-O-0002"].gateway_payment_ids[0].startswith("pi_")
    assert {p.amount_paid_minor for p in paid.values()} == {TOTAL_MINOR} and paid["INV-O-0002"].currency == "USD"
    assert gateway.invoices_paid_out_of_band(since + dt.timedelta(hours=2)) == []
    assert gateway.charge_invoice(band, 1, idempotency_prefix=PREFIX).already_paid
    assert gateway.charge_invoice(hosted, 1, idempotency_prefix=PREFIX).already_paid


def credit_note(number: str, total: str, reason: str = "SLA credit") -> CreditNote:
    amount = D(total)
    return CreditNote("INV", "org_pay", "USD", (), amount, D("0"), D("0"), amount, reason, number)


def test_void_and_uncollectible_are_mirrored_once(gateway, stripe_server):
    """Through the lifecycle's InvoiceMirror (its ledger's keys, with our prefix)."""
    mirror = GatewayInvoiceMirror(gateway, idempotency_prefix=PREFIX)
    voided, void_id, _ = mirrored(gateway, stripe_server, "INV-V-0001", org_id="org_v")
    bad, bad_id, _ = mirrored(gateway, stripe_server, "INV-V-0002", org_id="org_u")
    assert mirror.void_invoice(voided, idempotency_key="void-INV-V-0001") == void_id
    assert mirror.void_invoice(voided, idempotency_key="void-INV-V-0001") == void_id  # already void: success
    with pytest.raises(PermanentGatewayError) as err:
        gateway.charge_invoice(voided, 1, idempotency_prefix=PREFIX, external_id=void_id)
    assert err.value.code == "invoice_not_payable"
    assert mirror.mark_uncollectible(bad, idempotency_key="uncollectible-INV-V-0002") == bad_id
    assert gateway.mark_uncollectible(bad, idempotency_key="x").status == "uncollectible"
    assert gateway.void_invoice(bad, idempotency_key="test-void-INV-V-0002").status == "void"
    posts = [
        r for r in stripe_server.requests if r.method == "POST" and r.path.endswith(("/void", "/mark_uncollectible"))
    ]
    assert [r.idempotency_key for r in posts] == [
        "test-void-INV-V-0001",
        "test-uncollectible-INV-V-0002",
        "test-void-INV-V-0002",
    ]
    assert stripe_server.get(bad_id)["status_transitions"]["voided_at"] is not None


def test_paid_out_of_band_is_mirrored_once(gateway, stripe_server):
    mirror = GatewayInvoiceMirror(gateway, idempotency_prefix=PREFIX)
    invoice, stripe_id, _ = mirrored(gateway, stripe_server, "INV-B-0001")
    assert mirror.mark_paid_out_of_band(invoice, idempotency_key="paid-INV-B-0001") == stripe_id
    stripe_server.expire_idempotency_keys()
    assert mirror.mark_paid_out_of_band(invoice, idempotency_key="paid-INV-B-0001") == stripe_id
    view = stripe_server.get(stripe_id)
    assert (view["status"], view["paid_out_of_band"], view["amount_paid"]) == ("paid", True, TOTAL_MINOR)
    assert len(pay_requests(stripe_server, stripe_id)) == 1 and stripe_server.count("payment_intents") == 0
    assert gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX).already_paid


def test_credit_notes_lower_what_is_charged_and_are_created_once(gateway, stripe_server):
    mirror = GatewayInvoiceMirror(gateway, idempotency_prefix=PREFIX)
    invoice, stripe_id, customer = mirrored(gateway, stripe_server, "INV-CN-0001")
    key = "credit-note-CN-2026-000001"
    cn_id = mirror.create_credit_note(invoice, credit_note("CN-2026-000001", "26.26"), idempotency_key=key)
    cn = stripe_server.get(cn_id)
    assert (cn["total"], cn["currency"], cn["status"], cn["memo"]) == (2626, "usd", "issued", "SLA credit")
    assert cn["metadata"] == {"credit_note_id": "CN-2026-000001", "invoice_id": "INV-CN-0001"}
    stripe_server.expire_idempotency_keys()  # found by metadata, not by the key
    assert mirror.create_credit_note(invoice, credit_note("CN-2026-000001", "26.26"), idempotency_key=key) == cn_id
    assert stripe_server.count("credit_notes") == 1
    assert stripe_server.get(stripe_id)["amount_remaining"] == TOTAL_MINOR - 2626
    result = gateway.charge_invoice(invoice, 1, idempotency_prefix=PREFIX, amount_minor=TOTAL_MINOR - 2626)
    assert result.status is ChargeStatus.SUCCEEDED and result.amount_minor == TOTAL_MINOR - 2626
    after = gateway.create_credit_note(
        invoice, 1000, "CN-2026-000002", idempotency_key="test-credit-note-CN-2026-000002"
    )
    cn = stripe_server.get(after.external_id)
    assert (cn["type"], cn["out_of_band_amount"]) == ("post_payment", 1000)
    assert stripe_server.get(customer)["balance"] == 0  # recorded, no money moved by the mirror
    with pytest.raises(PermanentGatewayError):  # more than the invoice total
        gateway.create_credit_note(invoice, TOTAL_MINOR, "CN-2026-000003", idempotency_key="k3")


def test_two_attempts_racing_charge_once(gateway, stripe_server, monkeypatch):
    """Two workers charge the same invoice at once (attempts 1 and 2), both having read it as open:
    Stripe pays it once; the loser's pay is refused and it reports the winner's payment."""
    import concurrent.futures
    import threading

    invoice, stripe_id, _ = mirrored(gateway, stripe_server, "INV-X-0001")
    both_read = threading.Barrier(2, timeout=10)
    checked = StripeGateway._has_default_payment_method

    def check_then_wait(self, stripe_invoice):
        answer = checked(self, stripe_invoice)
        both_read.wait()
        return answer

    monkeypatch.setattr(StripeGateway, "_has_default_payment_method", check_then_wait)
    other = StripeGateway(stripe_client(stripe_server.api_key, api_base=stripe_server.api_base, timeout=10))
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(g.charge_invoice, invoice, n, idempotency_prefix=PREFIX) for n, g in ((1, gateway), (2, other))
        ]
        results = [f.result() for f in runs]
    assert {r.status for r in results} == {ChargeStatus.SUCCEEDED}
    assert sorted(r.already_paid for r in results) == [False, True]
    assert len({r.gateway_payment_id for r in results}) == 1
    assert stripe_server.count("payment_intents") == 1 and len(pay_requests(stripe_server, stripe_id)) == 2
