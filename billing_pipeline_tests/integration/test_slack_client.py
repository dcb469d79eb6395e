"""The Slack webhook client against the local receiver: ok, 429 with Retry-After, 5xx, Slack's
documented refusals, a stalled answer (ambiguous: posted once, never re-sent) and no server."""

from __future__ import annotations

import pytest

from billing_pipeline.clients.slack import (
    AmbiguousSlackError,
    PermanentSlackError,
    SlackWebhookClient,
    TransientSlackError,
)
from billing_pipeline_tests.support._util import LOCALHOST, free_port
from billing_pipeline_tests.support.slack_receiver import SlackReceiver

pytestmark = pytest.mark.integration


@pytest.fixture
def slack():
    with SlackReceiver() as receiver:
        yield receiver


def client(url: str, sleeps: list[float], **kw) -> SlackWebhookClient:
    return SlackWebhookClient(url, sleep=sleeps.append, **kw)


def test_a_post_reaches_the_hook_once(slack):
    sleeps: list[float] = []
    assert client(slack.webhook_url, sleeps).post("hello *world*") == "ok"
    assert slack.messages() == [{"text": "hello *world*"}] and sleeps == []


def test_429_waits_retry_after_then_posts(slack):
    slack.fail_next(2, 429, retry_after=1.5)
    sleeps: list[float] = []
    assert client(slack.webhook_url, sleeps).post("rate limited") == "ok"
    assert [r.status for r in slack.requests] == [429, 429, 200]
    assert sleeps == [1.5, 1.5] and len(slack.messages()) == 1


def test_a_huge_retry_after_is_capped(slack):
    slack.fail_next(1, 429, retry_after=3600)
    sleeps: list[float] = []
    client(slack.webhook_url, sleeps).post("x")
    assert sleeps == [30.0]


def test_5xx_backs_off_then_gives_up_as_transient(slack):
    slack.fail_next(10, 500)
    sleeps: list[float] = []
    with pytest.raises(TransientSlackError, match="gave up after 3 tries: Slack error 500: rollup_error"):
        client(slack.webhook_url, sleeps, max_retries=2, backoff_seconds=0.5).post("x")
    assert sleeps == [0.5, 1.0] and len(slack.requests) == 3 and slack.messages() == []


@pytest.mark.parametrize(
    ("status", "body"),
    [(400, "invalid_payload"), (403, "action_prohibited"), (404, "channel_not_found"), (410, "channel_is_archived")],
)
def test_slacks_refusals_are_permanent_and_not_retried(slack, status, body):
    slack.fail_next(1, status, body=body)
    with pytest.raises(PermanentSlackError, match=f"Slack refused the message \\({status}\\): {body}"):
        client(slack.webhook_url, []).post("x")
    assert len(slack.requests) == 1


def test_a_removed_hook_is_no_service(slack):
    with pytest.raises(PermanentSlackError, match="404.*no_service"):
        client(slack.webhook_url.replace("XXXXXXXX", "gone"), []).post("x")


def test_no_answer_in_time_is_ambiguous_and_the_post_is_not_repeated(slack):
    slack.stall_next(1, seconds=2)
    with pytest.raises(AmbiguousSlackError, match="may have been posted"):
        client(slack.webhook_url, [], timeout_seconds=0.5).post("maybe")
    assert len(slack.requests) == 1 and slack.messages() == [{"text": "maybe"}]


def test_no_server_is_transient_and_the_url_never_shows():
    url = f"http://{LOCALHOST}:{free_port()}/services/T/B/secret-token"
    with pytest.raises(TransientSlackError) as caught:
        client(url, [], max_retries=1).post("x")
    assert "secret-token" not in str(caught.value) and "no connection to Slack" in str(caught.value)


def test_empty_text_is_refused_before_sending(slack):
    with pytest.raises(PermanentSlackError, match="no_text"):
        client(slack.webhook_url, []).post("  ")
    assert slack.requests == []
