"""A local Slack incoming-webhook receiver: a threaded HTTP server on 127.0.0.1 that records posts.

    with SlackReceiver() as slack:
        SlackWebhookClient(slack.webhook_url).post("hello")
        slack.messages()          # [{"text": "hello"}]
        slack.fail_next(2, 429, retry_after=1)   # the next two posts: 429 rate_limited
        slack.fail_next(1, 500)                  # 500 rollup_error
        slack.fail_next(1, 404, body="channel_not_found")
        slack.stall_next(1, seconds=3)           # record the post, then answer after 3 s (a read timeout)

It answers like Slack (``ok`` with 200; the documented error strings otherwise). Every request is
recorded (``requests``, with its status), so a test counts what reached "Slack", failed or not;
``messages()`` are the posts answered ``ok`` or left without an answer (a stalled post counts: it
reached the channel). Only ``POST /services/...`` is a hook; other paths are 404 ``no_service``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ._util import LOCALHOST

HOOK_PATH = "/services/T000/B000/XXXXXXXX"
_BODIES = {429: "rate_limited", 500: "rollup_error", 400: "invalid_payload", 403: "action_prohibited"}


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    body: bytes
    status: int  # what the receiver answered (0: no answer, stalled)

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class _Fault:
    status: int
    body: str
    retry_after: float | None = None
    stall_seconds: float = 0.0


class SlackReceiver:
    def __init__(self) -> None:
        self.requests: list[ReceivedRequest] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((LOCALHOST, 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="slack-receiver", daemon=True)

    @property
    def webhook_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}{HOOK_PATH}"

    def fail_next(self, n: int, status: int, *, body: str | None = None, retry_after: float | None = None) -> None:
        with self._lock:
            self._faults += [_Fault(status, body or _BODIES.get(status, "error"), retry_after) for _ in range(n)]

    def stall_next(self, n: int, *, seconds: float) -> None:
        with self._lock:
            self._faults += [_Fault(200, "ok", stall_seconds=seconds) for _ in range(n)]

    def messages(self) -> list[dict]:
        with self._lock:
            return [r.json() for r in self.requests if r.path == HOOK_PATH and r.status in (200, 0)]

    def _record(self, path: str, body: bytes) -> _Fault:
        with self._lock:
            if path != HOOK_PATH:
                fault = _Fault(404, "no_service")
            elif not _valid(body):
                fault = _Fault(400, "invalid_payload")
            else:
                fault = self._faults.pop(0) if self._faults else _Fault(200, "ok")
            self.requests.append(ReceivedRequest(path, body, 0 if fault.stall_seconds else fault.status))
        return fault

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                fault = receiver._record(self.path, body)
                if fault.stall_seconds:
                    time.sleep(fault.stall_seconds)
                try:
                    self.send_response(fault.status)
                    self.send_header("Content-Type", "text/html")
                    if fault.retry_after is not None:
                        self.send_header("Retry-After", f"{fault.retry_after:g}")
                    self.end_headers()
                    self.wfile.write(fault.body.encode())
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a stalled answer)
                    pass

            def log_message(self, format: str, *args) -> None:  # noqa: A002 (quiet)
                pass

        return Handler

    def start(self) -> SlackReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SlackReceiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _valid(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and isinstance(data.get("text"), str) and bool(data["text"].strip())
