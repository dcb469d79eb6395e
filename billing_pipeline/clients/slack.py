"""Slack through an incoming webhook (``SLACK_WEBHOOK_URL``): one POST of ``{"text": ..., "blocks": ...}``.

A plain HTTP client (``urllib``) with a timeout. Slack's documented answers (api.slack.com
changelog 2016-05-17, "Improving error conditions for Incoming Webhooks") decide what a failure is:

=========================================  ==========================================  =============
answer                                     meaning                                     here
=========================================  ==========================================  =============
200 ``ok``                                 posted                                      sent
429 (``Retry-After: s``)                   rate limited (about one message a second)   retried
5xx (``rollup_error``)                     Slack's own trouble                         retried
400 ``invalid_payload``/``user_not_found``  the request is wrong                       permanent
403 ``action_prohibited``/``invalid_token``  the workspace refuses the hook             permanent
404 ``channel_not_found``/``no_service``   the hook or channel is gone                 permanent
410 ``channel_is_archived``                the channel is archived                     permanent
no connection, connect timeout             nothing was sent                            transient
read timeout after the request was sent    it may have been posted                     ambiguous
=========================================  ==========================================  =============

Retries inside one ``post`` wait ``Retry-After`` (capped) or a doubling backoff, up to
``max_retries``; then ``TransientSlackError``. A webhook has no idempotency key, so an answer lost
after the request went out is ``AmbiguousSlackError``: re-sending could post twice. The URL
holds a secret (the hook's token) and never appears in an error.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "AmbiguousSlackError",
    "PermanentSlackError",
    "SlackError",
    "SlackPoster",
    "SlackWebhookClient",
    "TransientSlackError",
]

MAX_RETRY_AFTER_SECONDS = 30.0
MAX_TEXT = 40_000  # Slack truncates a message's text past 40,000 characters


class SlackError(RuntimeError):
    """A Slack post failed; the message names Slack's error string when it gave one."""


class TransientSlackError(SlackError):
    """Not posted (rate limited past the retries, 5xx, no connection): try again later."""


class PermanentSlackError(SlackError):
    """Slack refused it (400/403/404/410): the same request will never succeed."""


class AmbiguousSlackError(SlackError):
    """The request was sent but no answer came back: it may have been posted."""


class SlackPoster(Protocol):
    def post(self, text: str, blocks: list[Mapping[str, Any]] | None = None) -> str: ...


@dataclass
class SlackWebhookClient:
    """Posts to one incoming webhook. ``post`` returns Slack's answer (``ok``)."""

    webhook_url: str
    timeout_seconds: float = 10.0
    max_retries: int = 3
    backoff_seconds: float = 1.0
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if not self.webhook_url.startswith(("http://", "https://")):
            raise ValueError("SLACK_WEBHOOK_URL: must be an http:// or https:// URL")

    def post(self, text: str, blocks: list[Mapping[str, Any]] | None = None) -> str:
        if not text.strip():
            raise PermanentSlackError("no_text: a Slack message needs text")
        body: dict[str, Any] = {"text": text[:MAX_TEXT]}
        if blocks:
            body["blocks"] = list(blocks)
        data = json.dumps(body).encode()
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._post_once(data)
            except _Retry as retry:
                if attempt > self.max_retries:
                    raise TransientSlackError(f"gave up after {attempt} tries: {retry.reason}") from None
                self.sleep(retry.wait if retry.wait is not None else self.backoff_seconds * 2 ** (attempt - 1))

    def _post_once(self, data: bytes) -> str:
        request = urllib.request.Request(
            self.webhook_url, data=data, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:  # noqa: S310 (http(s) only)
                answer = response.read().decode("utf-8", "replace").strip()
        except urllib.error.HTTPError as exc:
            raise _classify(exc.code, exc.read().decode("utf-8", "replace").strip(), exc.headers) from None
        except urllib.error.URLError as exc:  # refused, DNS, connect timeout: nothing reached Slack
            raise _Retry(f"no connection to Slack: {_reason(exc.reason)}", None) from None
        except TimeoutError:
            raise AmbiguousSlackError(
                f"no answer from Slack within {self.timeout_seconds:g} s after the request was sent: "
                "it may have been posted"
            ) from None
        except (ConnectionError, OSError) as exc:
            raise AmbiguousSlackError(f"connection lost after the request was sent: {type(exc).__name__}") from None
        if answer != "ok":  # 200 with another body: not Slack, or a proxy page
            raise PermanentSlackError(f"unexpected answer from the webhook (200): {answer[:200]!r}")
        return answer


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None) -> None:
        super().__init__(reason)
        self.reason, self.wait = reason, wait


def _reason(reason: object) -> str:
    return type(reason).__name__ if isinstance(reason, BaseException) else str(reason)


def _classify(status: int, body: str, headers: Mapping[str, str]) -> Exception:
    error = body[:200] or "(no body)"
    if status == 429:
        return _Retry(f"rate_limited (429): {error}", _retry_after(headers.get("Retry-After")))
    if status >= 500:
        return _Retry(f"Slack error {status}: {error}", _retry_after(headers.get("Retry-After")))
    return PermanentSlackError(f"Slack refused the message ({status}): {error}")


def _retry_after(value: str | None) -> float | None:
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_SECONDS) if value else None
    except ValueError:
        return None
