"""The Stripe-compatible server's payments, driven by the official ``stripe`` library: the shapes the
gateway relies on (402 ``card_error``, PaymentIntent states, idempotent ``pay``, payment methods,
credit notes) as Stripe's API reference documents them."""

from __future__ import annotations

import pytest
import stripe

pytestmark = pytest.mark.integration


def open_invoice(client, customer: str, amount: int = 5000) -> str:
    inv = client.v1.invoices.create(params={"customer": customer})
    client.v1.invoices.add_lines(inv.id, params={"lines": [{"amount": amount, "description": "x"}]})
    return client.v1.invoices.finalize_invoice(inv.id).id


def test_attaching_a_test_token_creates_a_payment_method(stripe_client):
    cus = stripe_client.v1.customers.create(params={"email": "pm@x.test"})
    pm = stripe_client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    assert pm.id.startswith("pm_") and pm.id != "pm_card_visa"
    assert (pm.type, pm.card.brand, pm.card.last4, pm.customer) == ("card", "visa", "4242", cus.id)
    bank = stripe_client.v1.payment_methods.attach("pm_usBankAccount", params={"customer": cus.id})
    assert bank.type == "us_bank_account"
    listed = stripe_client.v1.customers.payment_methods.list(cus.id)
    assert {m.id for m in listed.data} == {pm.id, bank.id}
    stripe_client.v1.payment_methods.detach(pm.id)
    assert [m.id for m in stripe_client.v1.payment_methods.list(params={"customer": cus.id}).data] == [bank.id]
    other = stripe_client.v1.customers.create(params={})
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.payment_methods.attach(bank.id, params={"customer": other.id})
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.payment_methods.attach("pm_card_nonsense", params={"customer": cus.id})


def test_off_session_payment_intent_decline_shape(stripe_client):
    cus = stripe_client.v1.customers.create(params={})
    params = {
        "amount": 1999,
        "currency": "eur",
        "customer": cus.id,
        "payment_method": "pm_card_chargeDeclinedInsufficientFunds",
        "off_session": True,
        "confirm": True,
        "metadata": {"invoice_id": "INV-9"},
    }
    with pytest.raises(stripe.CardError) as err:
        stripe_client.v1.payment_intents.create(params=params, options={"idempotency_key": "pi-1"})
    assert err.value.http_status == 402 and err.value.code == "card_declined"
    body = err.value.json_body["error"]
    assert (body["type"], body["decline_code"]) == ("card_error", "insufficient_funds")
    assert body["payment_intent"]["status"] == "requires_payment_method"
    pi_id = body["payment_intent"]["id"]
    with pytest.raises(stripe.CardError):  # the 402 was saved under the key: replayed, not re-run
        stripe_client.v1.payment_intents.create(params=params, options={"idempotency_key": "pi-1"})
    assert len(stripe_client.v1.payment_intents.list(params={"customer": cus.id}).data) == 1
    found = stripe_client.v1.payment_intents.search(params={"query": "metadata['invoice_id']:'INV-9'"})
    assert [p.id for p in found.data] == [pi_id]
    assert stripe_client.v1.payment_intents.cancel(pi_id).status == "canceled"


def test_authentication_required_off_and_on_session(stripe_client):
    cus = stripe_client.v1.customers.create(params={})
    base = {"amount": 500, "currency": "usd", "customer": cus.id, "payment_method": "pm_card_authenticationRequired"}
    with pytest.raises(stripe.CardError) as err:
        stripe_client.v1.payment_intents.create(params={**base, "off_session": True, "confirm": True})
    assert err.value.code == "authentication_required"
    assert err.value.json_body["error"]["decline_code"] == "authentication_required"
    on = stripe_client.v1.payment_intents.create(params={**base, "confirm": True})
    assert on.status == "requires_action" and on.next_action is not None
    stripe_client.v1.customers.update(
        cus.id, params={"invoice_settings": {"default_payment_method": "pm_card_authenticationRequired"}}
    )
    inv = open_invoice(stripe_client, cus.id)
    with pytest.raises(stripe.CardError) as err:
        stripe_client.v1.invoices.pay(inv, params={"off_session": False})
    assert err.value.code == "invoice_payment_intent_requires_action"


def test_pay_is_idempotent_and_refuses_other_parameters(stripe_client, stripe_server):
    cus = stripe_client.v1.customers.create(params={"invoice_settings": {"default_payment_method": "pm_card_visa"}})
    inv = open_invoice(stripe_client, cus.id)
    opts = {"idempotency_key": "charge-INV-1-1"}
    paid = stripe_client.v1.invoices.pay(inv, params={"off_session": True}, options=opts)
    again = stripe_client.v1.invoices.pay(inv, params={"off_session": True}, options=opts)
    assert again.last_response.headers["Idempotent-Replayed"] == "true" and again.id == paid.id
    with pytest.raises(stripe.IdempotencyError):
        stripe_client.v1.invoices.pay(
            inv, params={"off_session": True, "payment_method": "pm_card_mastercard"}, options=opts
        )
    with pytest.raises(stripe.InvalidRequestError) as err:  # a new key on a paid invoice
        stripe_client.v1.invoices.pay(inv, options={"idempotency_key": "charge-INV-1-2"})
    assert err.value.code == "invoice_already_paid"
    assert stripe_server.count("payment_intents") == 1


def test_processing_blocks_a_second_payment_until_it_settles(stripe_client, stripe_server):
    cus = stripe_client.v1.customers.create(params={})
    bank = stripe_client.v1.payment_methods.attach("pm_usBankAccount", params={"customer": cus.id})
    inv = open_invoice(stripe_client, cus.id)
    pending = stripe_client.v1.invoices.pay(inv, params={"payment_method": bank.id})
    assert pending.status == "open" and pending.payments.data[0].status == "open"
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.invoices.pay(inv, params={"payment_method": "pm_card_visa"})
    pi = pending.payments.data[0].payment.payment_intent
    with pytest.raises(stripe.InvalidRequestError):
        stripe_client.v1.payment_intents.cancel(pi)
    stripe_server.settle(pi, "failed")
    after = stripe_client.v1.invoices.retrieve(inv)
    assert after.status == "open" and after.payments.data[0].status == "canceled"
    assert stripe_client.v1.invoices.pay(inv, params={"payment_method": "pm_card_visa"}).status == "paid"


def test_credit_notes_follow_stripes_rules(stripe_client, stripe_server):
    cus = stripe_client.v1.customers.create(params={})
    inv = open_invoice(stripe_client, cus.id, 5000)
    pre = stripe_client.v1.credit_notes.create(params={"invoice": inv, "amount": 1500, "reason": "order_change"})
    assert (pre.type, pre.total, pre.status) == ("pre_payment", 1500, "issued")
    view = stripe_client.v1.invoices.retrieve(inv)
    assert (view.amount_due, view.amount_remaining, view.pre_payment_credit_notes_amount) == (3500, 3500, 1500)
    with pytest.raises(stripe.InvalidRequestError):  # more than remains due
        stripe_client.v1.credit_notes.create(params={"invoice": inv, "amount": 4000})
    stripe_client.v1.invoices.pay(inv, params={"paid_out_of_band": True})
    post = stripe_client.v1.credit_notes.create(params={"invoice": inv, "amount": 500})
    assert post.type == "post_payment" and stripe_client.v1.customers.retrieve(cus.id).balance == -500
    with pytest.raises(stripe.InvalidRequestError):  # all credit notes together above the total
        stripe_client.v1.credit_notes.create(params={"invoice": inv, "amount": 3001, "out_of_band_amount": 3001})
    assert [c.id for c in stripe_client.v1.credit_notes.list(params={"invoice": inv}).data] == [post.id, pre.id]
    inv2 = open_invoice(stripe_client, cus.id, 800)
    stripe_client.v1.credit_notes.create(params={"invoice": inv2, "amount": 800})
    assert stripe_client.v1.invoices.retrieve(inv2).status == "paid"  # credited in full
