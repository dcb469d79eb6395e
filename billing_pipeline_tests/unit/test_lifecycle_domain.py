"""The lifecycle's pure rules: the transition table, amount due, amounts typed by hand, credit notes."""

import datetime as dt
import itertools
from decimal import Decimal

import pytest

from billing_pipeline.domain.credit_notes import (
    CreditNoteRefused,
    build_credit_note,
    credit_note_pdf_key,
    request_key,
)
from billing_pipeline.domain.model import (
    TRANSITIONS,
    BillingInterval,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    TransitionRefused,
    check_transition,
)
from billing_pipeline.domain.receivables import (
    AmountError,
    ManualMethod,
    Payment,
    amount_due,
    manual_payment_id,
    overpayment_refusal,
    parse_amount,
    receivable,
)

S = InvoiceStatus
UTC = dt.UTC
ALLOWED = {
    (S.DRAFT, S.FINALIZED),
    (S.FINALIZED, S.PAID),
    (S.FINALIZED, S.VOID),
    (S.FINALIZED, S.UNCOLLECTIBLE),
    (S.UNCOLLECTIBLE, S.PAID),
    (S.UNCOLLECTIBLE, S.VOID),
}


@pytest.mark.parametrize("current,target", list(itertools.product(S, S)), ids=lambda s: s.value)
def test_every_pair_of_statuses_is_allowed_or_refused_as_stripe_does(current, target):
    if (current, target) in ALLOWED:
        check_transition(current, target)
        assert target in TRANSITIONS[current]
    else:
        with pytest.raises(TransitionRefused, match=f"is {current.value}: it cannot become {target.value}"):
            check_transition(current, target, number="INV-2026-000001")


def test_refusals_say_what_is_allowed():
    with pytest.raises(TransitionRefused, match=r"invoice INV-1 is void: it cannot become paid \(void is final\)"):
        check_transition(S.VOID, S.PAID, number="INV-1")
    with pytest.raises(TransitionRefused, match=r"from uncollectible only: paid, void"):
        check_transition(S.UNCOLLECTIBLE, S.FINALIZED)


def pay(amount: str, status: str = "succeeded", currency: str = "USD") -> Payment:
    return Payment(Decimal(amount), currency, status)


@pytest.mark.parametrize(
    "total,payments,credits,status,due",
    [
        ("100.00", [], [], None, "100.00"),
        ("100.00", [pay("30.00"), pay("20.00")], [], None, "50.00"),  # partial payments
        ("100.00", [pay("30.00")], [Decimal("25.50")], None, "44.50"),  # payment and credit note
        ("100.00", [pay("99.00", "failed"), pay("5", "pending"), pay("1", "processing"), pay("2", "canceled")], [],
         None, "100.00"),  # only succeeded payments count
        ("100.00", [pay("60.00")], [Decimal("40.00")], None, "0.00"),
        ("100.00", [pay("100.00")], [Decimal("10.00")], None, "0.00"),  # overpaid: never below zero
        ("100.00", [], [], S.VOID, "0.00"),  # a void invoice owes nothing
        ("100.00", [], [], S.DRAFT, "0.00"),
        ("100.00", [pay("10.00")], [], S.UNCOLLECTIBLE, "90.00"),  # still owed
    ],
)  # fmt: skip
def test_amount_due(total, payments, credits, status, due):
    result = amount_due(Decimal(total), "USD", payments, credits, status)
    assert result == Decimal(due) and str(result) == due


def test_amount_due_in_currencies_without_and_with_three_decimals():
    assert str(amount_due(Decimal(4983), "JPY", [Payment(Decimal(983), "JPY", "succeeded")])) == "4000"
    kwd = receivable(Decimal("10.697"), "KWD", [Payment(Decimal("0.697"), "KWD", "succeeded")], [Decimal("10.100")])
    assert str(kwd.amount_due) == "0.000" and kwd.overpaid == Decimal("0.100") and kwd.balance == Decimal("-0.100")


def test_a_payment_in_another_currency_is_refused():
    with pytest.raises(AmountError, match="is in EUR, the invoice in USD"):
        amount_due(Decimal(10), "USD", [Payment(Decimal(1), "EUR", "succeeded", external_id="p1")])


@pytest.mark.parametrize(
    "text,currency,expected",
    [
        ("12.50", "USD", "12.50"),
        ("12.5", "USD", "12.50"),
        ("12", "USD", "12.00"),
        (" 0.01 ", "USD", "0.01"),
        ("1000", "JPY", "1000"),
        ("1.5", "KWD", "1.500"),
        ("1.234", "KWD", "1.234"),
        ("99999999999.99", "USD", "99999999999.99"),
    ],
)
def test_amounts_parse_exactly_in_the_currency_exponent(text, currency, expected):
    value = parse_amount(text, currency)
    assert str(value) == expected and isinstance(value, Decimal)


@pytest.mark.parametrize(
    "text,currency,message",
    [
        ("12.505", "USD", "'12.505' has 3 decimals; USD amounts have 2 decimals"),
        ("1.5", "JPY", "'1.5' has 1 decimal; JPY amounts have no decimals"),
        ("1.0", "JPY", "'1.0' has 1 decimal; JPY amounts have no decimals"),
        ("1.2345", "KWD", "'1.2345' has 4 decimals; KWD amounts have 3 decimals"),
        ("0", "USD", "must be more than 0 USD"),
        ("0.000", "KWD", "must be more than 0 KWD"),
        ("-5", "USD", "is not an amount"),
        ("1e3", "USD", "is not an amount"),
        ("1,000", "USD", "is not an amount"),
        ("1_000", "USD", "is not an amount"),
        ("NaN", "USD", "is not an amount"),
        ("", "USD", "is not an amount"),
        (".5", "USD", "is not an amount"),
    ],
)
def test_bad_amounts_are_refused_naming_the_field(text, currency, message):
    with pytest.raises(AmountError, match="^AMOUNT: ") as info:
        parse_amount(text, currency)
    assert message in str(info.value)


def test_manual_payment_ids_are_deterministic():
    day = dt.date(2026, 11, 20)
    one = manual_payment_id("INV-1", ManualMethod.CHECK, Decimal("10.00"), "USD", reference=None, day=day)
    assert one == manual_payment_id("INV-1", ManualMethod.CHECK, Decimal("10.0"), "USD", reference=None, day=day)
    assert one != manual_payment_id("INV-1", ManualMethod.CHECK, Decimal("10.01"), "USD", reference=None, day=day)
    assert one != manual_payment_id("INV-1", ManualMethod.CASH, Decimal("10.00"), "USD", reference=None, day=day)
    assert one != manual_payment_id(
        "INV-1", ManualMethod.CHECK, Decimal("10.00"), "USD", reference=None, day=day + dt.timedelta(days=1)
    )
    assert manual_payment_id("INV-1", ManualMethod.CHECK, Decimal(1), "USD", reference=" TRX-9 ", day=day) == (
        "manual:INV-1:TRX-9"
    )
    with pytest.raises(AmountError, match="--reference"):
        manual_payment_id("INV-1", ManualMethod.CHECK, Decimal(1), "USD", reference="  ", day=day)


def test_overpayments_are_refused():
    assert overpayment_refusal("INV-1", Decimal("10.00"), Decimal("10.00"), "USD") is None
    assert "more than the amount due 10.00 USD" in overpayment_refusal("INV-1", Decimal(10), Decimal("10.01"), "USD")
    assert "nothing due" in overpayment_refusal("INV-1", Decimal(0), Decimal("1"), "USD")


def invoice(currency="USD", status=S.FINALIZED, rate="0.20") -> Invoice:
    amounts = {"USD": ("30.00", "12.34"), "JPY": ("3000", "1234"), "KWD": ("3.000", "1.234")}[currency]
    lines = tuple(
        InvoiceLine(code, code.title(), None, Decimal(1), Decimal(a), Decimal(a))
        for code, a in zip(("platform", "api"), amounts, strict=True)
    )
    subtotal = sum((line.amount for line in lines), Decimal(0))
    from billing_pipeline.domain import money

    tax = money.quantize(subtotal * Decimal(rate), currency)
    start = dt.datetime(2026, 10, 1, tzinfo=UTC)
    return Invoice(
        "acme", start, dt.datetime(2026, 11, 1, tzinfo=UTC), BillingInterval.MONTHLY, currency, lines, subtotal,
        Decimal(rate), tax, subtotal + tax, status, "INV-2026-000007",
    )  # fmt: skip


def test_a_full_credit_of_an_untouched_invoice_repeats_its_lines_and_tax():
    inv = invoice()
    note = build_credit_note(inv, amount=None, due=inv.total, reason="  duplicate\n invoice ")
    assert note.total == inv.total == Decimal("50.81") and note.tax == inv.tax and note.subtotal == inv.subtotal
    assert [(line.description, line.amount, line.invoice_line_number) for line in note.lines] == [
        ("Platform", Decimal("30.00"), 1),
        ("Api", Decimal("12.34"), 2),
    ]
    assert note.reason == "duplicate invoice" and note.invoice_number == "INV-2026-000007"


@pytest.mark.parametrize(
    "currency,rate,amount,due,net,tax",
    [
        ("USD", "0.20", "5.00", "50.81", "4.17", "0.83"),  # 5.00 / 1.2 = 4.1666.. -> 4.17
        ("USD", "0.20", "0.01", "50.81", "0.01", "0.00"),
        ("USD", "0", "7.77", "50.81", "7.77", "0.00"),
        ("JPY", "0.10", "1000", "4657", "909", "91"),  # 909.09 -> 909
        ("KWD", "0.05", "1.000", "4.444", "0.952", "0.048"),  # 0.95238 -> 0.952
        ("USD", "0.20", "20.81", "20.81", "17.34", "3.47"),  # the rest after a payment: one line
    ],
)
def test_a_partial_credit_is_one_line_net_plus_tax_exactly(currency, rate, amount, due, net, tax):
    note = build_credit_note(invoice(currency, rate=rate), amount=Decimal(amount), due=Decimal(due), reason="SLA")
    assert (str(note.subtotal), str(note.tax), str(note.total)) == (net, tax, amount)
    assert note.subtotal + note.tax == note.total and len(note.lines) == 1
    assert (
        note.lines[0].description == "Credit on invoice INV-2026-000007: SLA" and note.lines[0].amount == note.subtotal
    )


@pytest.mark.parametrize("status", [S.DRAFT, S.PAID, S.VOID, S.UNCOLLECTIBLE])
def test_only_a_finalized_invoice_is_credited(status):
    with pytest.raises(CreditNoteRefused, match=f"is {status.value}: only a finalized invoice is credited"):
        build_credit_note(invoice(status=status), amount=Decimal(1), due=Decimal(10), reason="x")


def test_never_more_than_what_remains_creditable():
    with pytest.raises(CreditNoteRefused, match=r"10.01 USD is more than what remains creditable \(10.00 USD"):
        build_credit_note(invoice(), amount=Decimal("10.01"), due=Decimal("10.00"), reason="x")
    with pytest.raises(CreditNoteRefused, match="nothing left to credit"):
        build_credit_note(invoice(), amount=None, due=Decimal(0), reason="x")
    with pytest.raises(CreditNoteRefused, match="--reason: say why"):
        build_credit_note(invoice(), amount=None, due=Decimal(1), reason=" \n ")
    with pytest.raises(CreditNoteRefused, match="not a positive amount in USD's decimals"):
        build_credit_note(invoice(), amount=Decimal("1.001"), due=Decimal(10), reason="x")


def test_request_keys_and_document_keys():
    assert request_key("INV-1", Decimal("5.00"), "USD", "SLA  breach") == request_key(
        "INV-1", Decimal(5), "USD", "SLA breach"
    )
    assert request_key("INV-1", None, "USD", "x") != request_key("INV-1", Decimal(5), "USD", "x")
    assert request_key("INV-1", Decimal(5), "USD", "x") != request_key("INV-1", Decimal(5), "USD", "y")
    note = build_credit_note(invoice(), amount=None, due=Decimal("50.81"), reason="x")
    issued = type(note)(
        **{**note.__dict__, "number": "CN-2026-000001", "issued_at": dt.datetime(2026, 12, 1, tzinfo=UTC)}
    )
    assert credit_note_pdf_key(issued) == "credit-notes/2026/12/acme/CN-2026-000001.pdf"
    with pytest.raises(ValueError):
        credit_note_pdf_key(note)
