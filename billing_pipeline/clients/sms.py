"""SMS through Twilio's Messages API: one ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``.

The request is form-encoded ``To``, ``From``, ``Body`` with HTTP basic auth (Account SID : Auth
Token); Twilio answers ``201 Created`` with the message resource, whose ``sid`` (``SM…``) we keep.
An error answer is JSON ``{"code": 21211, "message": "...", "more_info": "...", "status": 400}``.
What a failure is (Twilio's error pages, twilio.com/docs/api/errors/<code>):

======================================  ============================================  ===========
answer                                  meaning                                       here
======================================  ============================================  ===========
201 with a ``sid``                      queued for delivery                           sent
429 (20429, ``Retry-After``)            too many concurrent requests; not processed   retried
5xx                                     Twilio's own trouble                          retried
400 21211 / 21614                       ``To`` is not a valid (mobile) number         permanent
400 21610                               the recipient replied STOP (unsubscribed)     permanent
400 21606 / 21408 / 21617 ...           bad ``From``, region not enabled, too long    permanent
401 20003                               wrong Account SID or Auth Token               permanent
no connection, connect timeout          nothing was sent                              transient
read timeout after the request went out it may have been queued                       ambiguous
======================================  ============================================  ===========

Retries inside one ``send`` wait ``Retry-After`` (capped) or a doubling backoff, up to
``max_retries``; then ``TransientSmsError``. **Twilio has no idempotency key** for Messages, so
nothing here can make a re-sent request harmless: an answer lost after the request went out is
``AmbiguousSmsError`` and is never re-sent automatically (the notification ledger's row, claimed
before the send, is the only guard). The Auth Token never appears in an error; the ``To`` number
appears only as Twilio's message quotes it.

The HTTP exchange is a ``transport`` (default: ``urllib``), so unit tests map every answer with a
fake one; integration tests run the real one against ``support/sms_receiver.py``.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "AmbiguousSmsError",
    "HttpAnswer",
    "PermanentSmsError",
    "SmsError",
    "SmsSender",
    "TransientSmsError",
    "TwilioSmsClient",
    "urllib_transport",
]

DEFAULT_API_BASE = "https://api.twilio.com"
MAX_BODY = 1600  # Twilio refuses longer bodies (error 21617)
MAX_RETRY_AFTER_SECONDS = 30.0


class SmsError(RuntimeError):
    """An SMS was not (or maybe not) sent; ``code`` is Twilio's error code when it gave one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientSmsError(SmsError):
    """Not sent (rate limited past the retries, 5xx, no connection): try again later."""


class PermanentSmsError(SmsError):
    """Twilio refused it (4xx): the same request will never succeed."""


class AmbiguousSmsError(SmsError):
    """The request went out but no answer came back: it may have been queued."""


class SmsSender(Protocol):
    def send(self, to: str, body: str) -> str:
        """Send ``body`` to ``to`` (E.164); returns the provider's message id."""
        ...


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: Mapping[str, str]
    body: bytes


class NotSent(Exception):
    """The transport could not reach the server: the request did not go out."""


class NoAnswer(Exception):
    """The request went out and no (complete) answer came back."""


#: (url, form body, headers, timeout) -> the answer, any status; NotSent / NoAnswer otherwise
Transport = Callable[[str, bytes, Mapping[str, str], float], HttpAnswer]


def urllib_transport(url: str, data: bytes, headers: Mapping[str, str], timeout: float) -> HttpAnswer:
    request = urllib.request.Request(url, data=data, method="POST", headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) only)
            return HttpAnswer(response.status, dict(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return HttpAnswer(exc.code, dict(exc.headers or {}), exc.read())
    except urllib.error.URLError as exc:  # refused, DNS, connect timeout: nothing reached Twilio
        reason = exc.reason
        raise NotSent(type(reason).__name__ if isinstance(reason, BaseException) else str(reason)) from None
    except TimeoutError:
        raise NoAnswer(f"no answer within {timeout:g} s") from None
    except OSError as exc:  # reset or closed after the request was written
        raise NoAnswer(f"connection lost: {type(exc).__name__}") from None


@dataclass
class TwilioSmsClient:
    """Sends from one number (``from_number``, E.164) with one account's credentials."""

    account_sid: str
    auth_token: str = field(repr=False)
    from_number: str
    api_base: str = DEFAULT_API_BASE
    timeout_seconds: float = 10.0
    max_retries: int = 3
    backoff_seconds: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    transport: Transport = urllib_transport

    def __post_init__(self) -> None:
        if not self.api_base.startswith(("http://", "https://")):
            raise ValueError("TWILIO_API_BASE: must be an http:// or https:// URL")
        if not self.account_sid or not self.auth_token:
            raise ValueError("TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are both required")

    @property
    def url(self) -> str:
        sid = urllib.parse.quote(self.account_sid, safe="")
        return f"{self.api_base.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"

    def send(self, to: str, body: str) -> str:
        if not body.strip():
            raise PermanentSmsError("an SMS needs a body (Twilio error 21602)", 21602)
        if len(body) > MAX_BODY:
            raise PermanentSmsError(f"body of {len(body)} characters exceeds {MAX_BODY} (Twilio error 21617)", 21617)
        data = urllib.parse.urlencode({"To": to, "From": self.from_number, "Body": body}).encode()
        credentials = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        headers = {
            "Authorization": f"Basic {credentials}",
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Accept": "application/json",
        }
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._send_once(data, headers)
            except _Retry as retry:
                if attempt > self.max_retries:
                    raise TransientSmsError(f"gave up after {attempt} tries: {retry.reason}", retry.code) from None
                self.sleep(retry.wait if retry.wait is not None else self.backoff_seconds * 2 ** (attempt - 1))

    def _send_once(self, data: bytes, headers: Mapping[str, str]) -> str:
        try:
            answer = self.transport(self.url, data, headers, self.timeout_seconds)
        except NotSent as exc:
            raise _Retry(f"no connection to Twilio: {exc}", None, None) from None
        except NoAnswer as exc:
            raise AmbiguousSmsError(f"{exc} after the request was sent to Twilio: it may have been queued") from None
        if answer.status in (200, 201):
            sid = _json(answer.body).get("sid")
            if not isinstance(sid, str) or not sid:
                raise AmbiguousSmsError(f"Twilio answered {answer.status} without a message sid: it may be queued")
            return sid
        raise _classify(answer)


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None, code: int | None) -> None:
        super().__init__(reason)
        self.reason, self.wait, self.code = reason, wait, code


def _json(body: bytes) -> dict:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _classify(answer: HttpAnswer) -> Exception:
    error = _json(answer.body)
    code = error.get("code") if isinstance(error.get("code"), int) else None
    message = str(error.get("message") or answer.body[:200].decode("utf-8", "replace") or "(no body)")[:300]
    what = f"Twilio error {code}: {message}" if code else f"Twilio answered {answer.status}: {message}"
    if answer.status == 429:
        return _Retry(f"rate limited (429): {what}", _retry_after(answer.headers), code)
    if answer.status >= 500:
        return _Retry(f"{answer.status}: {what}", _retry_after(answer.headers), code)
    return PermanentSmsError(f"Twilio refused the message ({answer.status}): {what}", code)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_SECONDS) if value else None
    except ValueError:
        return None
