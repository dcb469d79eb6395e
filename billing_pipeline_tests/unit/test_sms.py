"""The SMS client's error mapping with a fake transport, the one-segment text rule, the SMS channel."""

from __future__ import annotations

import base64
import datetime as dt
import json
import urllib.parse

import pytest

from billing_pipeline.clients.sms import (
    AmbiguousSmsError,
    HttpAnswer,
    NoAnswer,
    NotSent,
    PermanentSmsError,
    TransientSmsError,
    TwilioSmsClient,
)
from billing_pipeline.domain.model import Organization
from billing_pipeline.rendering.reminders import ReminderFacts
from billing_pipeline.rendering.seller import Seller
from billing_pipeline.rendering.sms import fit_sms, gsm7_length, reminder_sms, sms_length
from billing_pipeline.services.notifications import (
    AmbiguousChannelError,
    Notification,
    PermanentChannelError,
    Recipient,
    SmsChannel,
    TransientChannelError,
)
from billing_pipeline_tests.builders import org

SID = "AC" + "ab" * 16


class FakeTransport:
    """Answers (or raises) from a script, recording each request."""

    def __init__(self, *script) -> None:
        self.script, self.requests = list(script), []

    def __call__(self, url, data, headers, timeout):
        self.requests.append((url, urllib.parse.parse_qs(data.decode()), dict(headers), timeout))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def answer(status: int, document: dict, **headers) -> HttpAnswer:
    return HttpAnswer(status, {k.replace("_", "-"): v for k, v in headers.items()}, json.dumps(document).encode())


def error(status: int, code: int, message: str) -> HttpAnswer:
    doc = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return answer(status, doc)


def client(transport, sleeps: list[float] | None = None, **kw) -> TwilioSmsClient:
    sleeps = [] if sleeps is None else sleeps
    return TwilioSmsClient(SID, "token", "+15005550006", sleep=sleeps.append, transport=transport, **kw)


def test_a_send_posts_the_form_with_basic_auth_and_returns_the_sid():
    transport = FakeTransport(answer(201, {"sid": "SM" + "0" * 32, "status": "queued"}))
    assert client(transport, api_base="http://127.0.0.1:9/").send("+14155550100", "héllo") == "SM" + "0" * 32
    [(url, form, headers, timeout)] = transport.requests
    assert url == f"http://127.0.0.1:9/2010-04-01/Accounts/{SID}/Messages.json" and timeout == 10.0
    assert form == {"To": ["+14155550100"], "From": ["+15005550006"], "Body": ["héllo"]}
    assert headers["Authorization"] == "Basic " + base64.b64encode(f"{SID}:token".encode()).decode()
    assert headers["Content-Type"].startswith("application/x-www-form-urlencoded")


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, 21211, "The 'To' number +1415 is not a valid phone number."),
        (400, 21610, "Attempt to send to unsubscribed recipient"),
        (400, 21606, "The From phone number is not a valid, SMS-capable inbound phone number"),
        (401, 20003, "Authenticate"),
        (404, 20404, "The requested resource was not found"),
    ],
)
def test_4xx_answers_are_permanent_with_twilio_s_code_and_not_retried(status, code, message):
    transport = FakeTransport(error(status, code, message))
    with pytest.raises(PermanentSmsError, match=f"refused the message \\({status}\\): Twilio error {code}") as caught:
        client(transport).send("+14155550100", "x")
    assert caught.value.code == code and len(transport.requests) == 1
    assert "token" not in str(caught.value)


def test_429_waits_retry_after_capped_then_sends():
    transport = FakeTransport(
        answer(429, {"code": 20429, "message": "Too Many Requests"}, Retry_After="2"),
        answer(429, {"code": 20429, "message": "Too Many Requests"}, Retry_After="3600"),
        answer(201, {"sid": "SM1"}),
    )
    sleeps: list[float] = []
    assert client(transport, sleeps).send("+14155550100", "x") == "SM1"
    assert sleeps == [2.0, 30.0]


def test_5xx_backs_off_then_gives_up_as_transient():
    transport = FakeTransport(*[error(503, 20503, "Service unavailable")] * 3)
    sleeps: list[float] = []
    with pytest.raises(TransientSmsError, match="gave up after 3 tries: 503: Twilio error 20503") as caught:
        client(transport, sleeps, max_retries=2, backoff_seconds=0.5).send("+14155550100", "x")
    assert sleeps == [0.5, 1.0] and caught.value.code == 20503


def test_no_connection_is_transient_and_a_lost_answer_is_ambiguous_never_repeated():
    down = FakeTransport(*[NotSent("ConnectionRefusedError")] * 2)
    with pytest.raises(TransientSmsError, match="no connection to Twilio: ConnectionRefusedError"):
        client(down, max_retries=1).send("+14155550100", "x")
    lost = FakeTransport(NoAnswer("no answer within 10 s"))
    with pytest.raises(AmbiguousSmsError, match="it may have been queued"):
        client(lost).send("+14155550100", "x")
    assert len(lost.requests) == 1


def test_a_2xx_without_a_sid_or_a_non_json_error_body():
    with pytest.raises(AmbiguousSmsError, match="without a message sid"):
        client(FakeTransport(HttpAnswer(201, {}, b"<html>"))).send("+14155550100", "x")
    with pytest.raises(PermanentSmsError, match="Twilio answered 403: <html>proxy"):
        client(FakeTransport(HttpAnswer(403, {}, b"<html>proxy"))).send("+14155550100", "x")


def test_bodies_twilio_would_refuse_are_refused_before_sending():
    transport = FakeTransport()
    with pytest.raises(PermanentSmsError, match="21602"):
        client(transport).send("+14155550100", "  ")
    with pytest.raises(PermanentSmsError, match="21617"):
        client(transport).send("+14155550100", "x" * 1601)
    assert transport.requests == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [("plain text", (10, 160)), ("a{b}€", (8, 160)), ("Zürich: 12,00 €", (16, 160)), ("東京 😀", (5, 70))],
)
def test_sms_length_counts_gsm_septets_or_utf16_units(text, expected):
    assert sms_length(text) == expected


def test_fit_sms_keeps_one_segment_and_cuts_at_a_word_without_splitting_escapes_or_surrogates():
    short = "Example Cloud Ltd: invoice INV-2026-000001, 120.00 USD, is due 2026-03-31."
    assert fit_sms(short) == short
    long = " ".join(["word"] * 60)
    fitted = fit_sms(long)
    assert fitted.endswith("word...") and gsm7_length(fitted) <= 160
    braces = fit_sms("{" * 200)
    assert gsm7_length(braces) <= 160 and braces == "{" * 78 + "..."
    emoji = fit_sms("😀" * 50)
    assert sms_length(emoji)[0] <= 70 and emoji == "😀" * 33 + "..."
    mixed = fit_sms("a" * 150 + " 東京 " + "b" * 20)  # the cut drops the one non-GSM word: GSM-7 again
    assert mixed == "a" * 150 + "..." and sms_length(mixed) == (153, 160)


def facts(today: str, organization: Organization | None = None) -> ReminderFacts:
    return ReminderFacts(
        organization or org("acme"),
        "INV-2026-000001",
        "overdue",
        1,
        dt.date(2026, 3, 31),
        dt.date.fromisoformat(today),
        12_000,
        12_000,
        "USD",
    )


SELLER = Seller("Example Cloud Ltd", ("1 Example Street",), None, "billing@seller.test", "Pay by bank transfer.")


def test_the_reminder_sms_names_invoice_amount_and_due_date_only():
    assert reminder_sms(facts("2026-03-24"), SELLER) == (
        "Example Cloud Ltd: invoice INV-2026-000001, 120.00 USD, is due 2026-03-31."
    )
    overdue = reminder_sms(facts("2026-04-01", org("acme")), SELLER)
    assert overdue == "Example Cloud Ltd: invoice INV-2026-000001, 120.00 USD, was due 2026-03-31 (1 day overdue)."
    organization = org("acme")
    for private in (organization.name, organization.billing_email, organization.id):
        assert private not in overdue
    long_seller = Seller("S" * 300, (), None, "b@s.test", "")
    assert sms_length(reminder_sms(facts("2026-04-20"), long_seller))[0] <= 160


class FakeSender:
    def __init__(self, raises: Exception | None = None) -> None:
        self.raises, self.sent = raises, []

    def send(self, to: str, body: str) -> str:
        self.sent.append((to, body))
        if self.raises:
            raise self.raises
        return "SM42"


def notice(phone: str | None = "+14155550100", sms_text: str | None = "short") -> Notification:
    return Notification(
        "reminder:1:overdue:customer",
        "reminder",
        "customer",
        Recipient("billing@acme.test", "Acme", phone),
        ("email", "sms"),
        "Overdue: invoice INV-2026-000001",
        "long e-mail text " * 40,
        sms_text=sms_text,
    )


def test_the_sms_channel_sends_the_short_text_to_the_phone_and_maps_errors():
    sender = FakeSender()
    channel = SmsChannel(sender)
    assert channel.deliver(notice(), None) == "SM42" and sender.sent == [("+14155550100", "short")]
    assert channel.address(notice()) == "+14155550100" and channel.external_id(notice()) is None
    channel.deliver(notice(sms_text=None), None)
    assert sender.sent[-1] == ("+14155550100", "Overdue: invoice INV-2026-000001")
    for raised, mapped in (
        (TransientSmsError("503"), TransientChannelError),
        (AmbiguousSmsError("lost"), AmbiguousChannelError),
        (PermanentSmsError("21610", 21610), PermanentChannelError),
    ):
        with pytest.raises(mapped):
            SmsChannel(FakeSender(raised)).deliver(notice(), None)
    with pytest.raises(PermanentChannelError, match="no phone number"):
        SmsChannel(FakeSender()).deliver(notice(phone=None), None)
