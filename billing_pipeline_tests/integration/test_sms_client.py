"""The Twilio SMS client against the local Messages API: 201 with a sid, Twilio's refusals (bad To, STOP,
wrong credentials), 429 with Retry-After, 5xx, a stalled answer (ambiguous: queued once, never re-sent), no server."""

from __future__ import annotations

import pytest

from billing_pipeline.clients.sms import AmbiguousSmsError, PermanentSmsError, TransientSmsError, TwilioSmsClient
from billing_pipeline_tests.support._util import LOCALHOST, free_port
from billing_pipeline_tests.support.sms_receiver import SmsReceiver

pytestmark = pytest.mark.integration
TO = "+14155550100"


@pytest.fixture
def sms():
    with SmsReceiver() as receiver:
        yield receiver


def client(sms: SmsReceiver, sleeps: list[float], **kw) -> TwilioSmsClient:
    values = {"auth_token": sms.auth_token, "from_number": sms.from_number, "api_base": sms.api_base, **kw}
    return TwilioSmsClient(sms.account_sid, sleep=sleeps.append, **values)


def test_a_message_is_queued_once_and_its_sid_returned(sms):
    sid = client(sms, []).send(TO, "Example Cloud Ltd: invoice INV-1, 12.00 €, is due 2026-03-31.")
    [message] = sms.messages()
    assert sid == message["sid"] and sid.startswith("SM") and len(sid) == 34
    assert (message["To"], message["From"]) == (TO, sms.from_number) and message["Body"].endswith(
        "€, is due 2026-03-31."
    )


@pytest.mark.parametrize(
    ("to", "code", "message"),
    [("4155550100", 21211, "The 'To' number 4155550100 is not a valid phone number."), ("", 21604, "'To' phone")],
)
def test_an_invalid_to_is_a_permanent_refusal(sms, to, code, message):
    with pytest.raises(PermanentSmsError, match=f"\\(400\\): Twilio error {code}: .*{message[:8]}") as caught:
        client(sms, []).send(to, "x")
    assert caught.value.code == code and len(sms.requests) == 1 and sms.messages() == []


def test_an_unsubscribed_recipient_is_21610_and_not_retried(sms):
    sms.unsubscribed.add(TO)
    with pytest.raises(PermanentSmsError, match="Twilio error 21610: Attempt to send to unsubscribed recipient"):
        client(sms, []).send(TO, "x")
    assert len(sms.requests) == 1


def test_wrong_credentials_are_20003_and_the_token_is_never_shown(sms):
    with pytest.raises(PermanentSmsError, match="\\(401\\): Twilio error 20003: Authenticate") as caught:
        client(sms, [], auth_token="not-the-token").send(TO, "x")
    assert "not-the-token" not in str(caught.value)
    with pytest.raises(PermanentSmsError, match="21606"):
        client(sms, [], from_number="+15005550001").send(TO, "x")


def test_429_waits_retry_after_then_sends(sms):
    sms.fail_next(2, 429, retry_after=1.5)
    sleeps: list[float] = []
    assert client(sms, sleeps).send(TO, "rate limited").startswith("SM")
    assert [r.status for r in sms.requests] == [429, 429, 201] and sleeps == [1.5, 1.5]
    assert len(sms.messages()) == 1


def test_5xx_backs_off_then_gives_up_as_transient(sms):
    sms.fail_next(10, 503)
    sleeps: list[float] = []
    with pytest.raises(TransientSmsError, match="gave up after 3 tries: 503: Twilio error 20503"):
        client(sms, sleeps, max_retries=2, backoff_seconds=0.5).send(TO, "x")
    assert sleeps == [0.5, 1.0] and len(sms.requests) == 3 and sms.messages() == []


def test_no_answer_in_time_is_ambiguous_and_the_message_is_not_repeated(sms):
    sms.stall_next(1, seconds=2)
    with pytest.raises(AmbiguousSmsError, match="may have been queued"):
        client(sms, [], timeout_seconds=0.5).send(TO, "maybe")
    assert len(sms.requests) == 1 and [m["Body"] for m in sms.messages()] == ["maybe"]


def test_no_server_is_transient(sms):
    sleeps: list[float] = []
    with pytest.raises(TransientSmsError, match="no connection to Twilio"):
        client(sms, sleeps, api_base=f"http://{LOCALHOST}:{free_port()}", max_retries=1).send(TO, "x")
    assert sleeps == [1.0]
