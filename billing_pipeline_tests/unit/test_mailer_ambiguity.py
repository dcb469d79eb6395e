"""Which SMTP failures are ambiguous (the server may have the message) and which are retriable.

A scripted SMTP peer on a local socket (stdlib only) answers each command as the test says,
so the real ``smtplib`` client path is exercised: the rule is that once the server has said
354 to DATA it holds the whole message, and any failure without its final reply (timeout,
connection lost) is ambiguous; everything before that, or a definite reply after it, is not.
"""

from __future__ import annotations

import socket
import threading
from email.message import EmailMessage

import pytest

from billing_pipeline.clients.errors import AmbiguousMailError, PermanentMailError, TransientMailError
from billing_pipeline.clients.mailer import OutboxMailer, SMTPMailer

OK = {"EHLO": "250 localhost", "MAIL": "250 OK", "RCPT": "250 OK", "DATA": "354 go ahead", "QUIT": "221 bye"}


class ScriptedSMTP:
    """One connection at a time; ``replies[verb]`` is the answer, ``"hang"`` never answers and
    ``"close"`` drops the connection. ``after_data`` answers the end of the message."""

    def __init__(self, after_data: str = "250 queued", **replies: str) -> None:
        self.replies = {**OK, **replies}
        self.after_data = after_data
        self.bodies: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._session(conn.makefile("rwb"))

    def _answer(self, f, reply: str) -> bool:
        if reply == "hang":
            self.done.wait(10)
            return False
        if reply == "close":
            return False
        f.write(reply.encode() + b"\r\n")
        f.flush()
        return True

    def _session(self, f) -> None:
        if not self._answer(f, "220 scripted"):
            return
        while line := f.readline():
            verb = line.split(b" ", 1)[0].strip().upper().decode()
            verb = verb.split(":")[0]
            if not self._answer(f, self.replies.get(verb, "250 OK")):
                return
            if verb == "DATA" and self.replies["DATA"].startswith("354"):
                body = b""
                while not body.endswith(b"\r\n.\r\n"):
                    chunk = f.readline()
                    if not chunk:
                        return
                    body += chunk
                self.bodies.append(body)
                if not self._answer(f, self.after_data):
                    return

    def close(self) -> None:
        self.done.set()
        self.sock.close()


def _msg() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "billing@example.com"
    msg["To"] = "ap@acme.example"
    msg["Subject"] = "Invoice"
    msg["Message-ID"] = "<invoice-INV-1.invoice@example.com>"
    msg.set_content("hello\nsecond line")
    return msg


@pytest.fixture
def server():
    made: list[ScriptedSMTP] = []

    def start(**kw) -> ScriptedSMTP:
        made.append(ScriptedSMTP(**kw))
        return made[-1]

    yield start
    for s in made:
        s.close()


def send(peer: ScriptedSMTP) -> None:
    SMTPMailer("127.0.0.1", peer.port, security="none", timeout=0.5).send(_msg())


@pytest.mark.parametrize("after_data", ["hang", "close"])
def test_a_failure_after_the_message_was_handed_over_is_ambiguous(server, after_data):
    peer = server(after_data=after_data)
    with pytest.raises(AmbiguousMailError) as err:
        send(peer)
    assert len(peer.bodies) == 1  # the server has the whole message
    assert not err.value.transient  # never retried automatically
    assert "<invoice-INV-1.invoice@example.com>" in str(err.value)


@pytest.mark.parametrize(
    ("replies", "expected"),
    [
        ({"RCPT": "hang"}, TransientMailError),  # timeout before DATA
        ({"RCPT": "close"}, TransientMailError),
        ({"DATA": "hang"}, TransientMailError),  # no 354: the server never got the message
        ({"DATA": "451 4.3.0 busy"}, TransientMailError),
        ({"RCPT": "550 5.1.1 no such user"}, PermanentMailError),
        ({"after_data": "451 4.3.0 try later"}, TransientMailError),  # a definite "not accepted"
        ({"after_data": "554 5.6.0 rejected"}, PermanentMailError),
    ],
)
def test_failures_before_data_or_with_a_definite_reply_are_not_ambiguous(server, replies, expected):
    peer = server(**replies)
    with pytest.raises(expected) as err:
        send(peer)
    assert not isinstance(err.value, AmbiguousMailError)


def test_connection_refused_is_retriable():
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    with pytest.raises(TransientMailError):
        SMTPMailer("127.0.0.1", port, security="none", timeout=0.5).send(_msg())


def test_a_session_reconnects_after_an_ambiguous_failure(server):
    peer = server(after_data="close")
    mailer = SMTPMailer("127.0.0.1", peer.port, security="none", timeout=0.5)
    with mailer.session():
        with pytest.raises(AmbiguousMailError):
            mailer.send(_msg())
        peer.after_data = "250 queued"
        assert mailer.send(_msg()).created
    assert len(peer.bodies) == 2


def test_outbox_files_are_crlf_as_on_the_wire(tmp_path):
    mailer = OutboxMailer(tmp_path)
    mailer.send(_msg())
    data = next(tmp_path.iterdir()).read_bytes()
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
