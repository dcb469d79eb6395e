"""A local Twilio Messages API: a threaded HTTP server on 127.0.0.1 that checks and records SMS.

    with SmsReceiver() as sms:
        client = TwilioSmsClient(sms.account_sid, sms.auth_token, sms.from_number, api_base=sms.api_base)
        client.send("+14155550100", "hi")
        sms.messages()                         # [{"To": "+14155550100", "From": ..., "Body": "hi", "sid": "SM..."}]
        sms.fail_next(2, 429, retry_after=1)   # the next two requests: 429, error 20429
        sms.fail_next(1, 503)                  # 503, error 20500
        sms.stall_next(1, seconds=3)           # record the message, then answer after 3 s (a read timeout)
        sms.unsubscribed.add("+14155550199")   # that recipient replied STOP: 400, error 21610

It answers as Twilio documents ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``: HTTP basic
auth with the Account SID and Auth Token (401, error 20003 ``Authenticate``, otherwise), a
form-encoded ``To`` in E.164 (400, 21211 ``The 'To' number ... is not a valid phone number``),
``From`` one of the account's numbers (400, 21606), a ``Body`` (400, 21602) of at most 1,600
characters (400, 21617); then 201 with the message resource (``sid`` ``SM`` + 32 hex digits,
``status: queued``). Errors are JSON ``{code, message, more_info, status}``. Every request is
recorded (``requests``, with its status); ``messages()`` are those answered 201 or left without an
answer (a stalled one counts: it was queued).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ._util import LOCALHOST

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token-" + "0" * 16
FROM_NUMBER = "+15005550006"
_E164 = re.compile(r"\+[1-9][0-9]{7,14}")
_MESSAGES_PATH = re.compile(r"/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Messages\.json")
_DEFAULT_CODES = {429: 20429, 500: 20500, 502: 20500, 503: 20503, 400: 21211, 401: 20003, 404: 20404}
_MESSAGES = {
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service unavailable",
    20003: "Authenticate",
    20404: "The requested resource was not found",
    21610: "Attempt to send to unsubscribed recipient",
}


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    form: dict[str, str]
    status: int  # what the receiver answered (0: no answer, stalled)
    sid: str | None = None


@dataclass
class _Answer:
    status: int
    code: int | None = None
    message: str = ""
    retry_after: float | None = None
    stall_seconds: float = 0.0


class SmsReceiver:
    def __init__(
        self, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN, from_number: str = FROM_NUMBER
    ) -> None:
        self.account_sid, self.auth_token, self.from_number = account_sid, auth_token, from_number
        self.requests: list[ReceivedRequest] = []
        self.unsubscribed: set[str] = set()
        self._faults: list[_Answer] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((LOCALHOST, 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="sms-receiver", daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def fail_next(self, n: int, status: int, *, code: int | None = None, retry_after: float | None = None) -> None:
        code = code or _DEFAULT_CODES.get(status, 20001)
        with self._lock:
            self._faults += [_Answer(status, code, _MESSAGES.get(code, "error"), retry_after) for _ in range(n)]

    def stall_next(self, n: int, *, seconds: float) -> None:
        with self._lock:
            self._faults += [_Answer(201, stall_seconds=seconds) for _ in range(n)]

    def messages(self) -> list[dict[str, str]]:
        with self._lock:
            return [{**r.form, "sid": r.sid or ""} for r in self.requests if r.status in (201, 0)]

    def _check(self, path: str, authorization: str | None, form: dict[str, str]) -> _Answer:
        """Twilio's own checks, in its order: the resource, the credentials, the parameters."""
        match = _MESSAGES_PATH.fullmatch(path)
        if match is None:
            return _Answer(404, 20404, f"The requested resource {path} was not found")
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if match.group(1) != self.account_sid or authorization != f"Basic {expected}":
            return _Answer(401, 20003, "Authenticate")
        to, body = form.get("To", ""), form.get("Body", "")
        if not to:
            return _Answer(400, 21604, "A 'To' phone number is required.")
        if not _E164.fullmatch(to):
            return _Answer(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if form.get("From") != self.from_number:
            return _Answer(400, 21606, f"The From phone number {form.get('From')} is not a valid, SMS-capable number.")
        if not body:
            return _Answer(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return _Answer(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        if to in self.unsubscribed:
            return _Answer(400, 21610, _MESSAGES[21610])
        return self._faults.pop(0) if self._faults else _Answer(201)

    def _record(self, path: str, authorization: str | None, raw: bytes) -> tuple[_Answer, dict]:
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()}
        with self._lock:
            answer = self._check(path, authorization, form)
            sid = "SM" + secrets.token_hex(16) if answer.status == 201 else None
            self.requests.append(ReceivedRequest(path, form, 0 if answer.stall_seconds else answer.status, sid))
        if answer.status != 201:
            error = {"code": answer.code, "message": answer.message, "status": answer.status}
            return answer, {**error, "more_info": f"https://www.twilio.com/docs/errors/{answer.code}"}
        resource = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": form["To"],
            "from": form["From"],
            "body": form["Body"],
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "error_code": None,
            "error_message": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        return answer, resource

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer, document = receiver._record(self.path, self.headers.get("Authorization"), raw)
                if answer.stall_seconds:
                    time.sleep(answer.stall_seconds)
                body = json.dumps(document).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    if answer.retry_after is not None:
                        self.send_header("Retry-After", f"{answer.retry_after:g}")
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a stalled answer)
                    pass

            def log_message(self, format: str, *args) -> None:  # noqa: A002 (quiet)
                pass

        return Handler

    def start(self) -> SmsReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SmsReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
