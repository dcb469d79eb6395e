"""Outgoing mail: ``SMTPMailer`` (real) or ``OutboxMailer`` (``.eml`` files in a folder).

Exactly-once is NOT something SMTP can give: a connection that drops after ``DATA`` may or
may not have delivered, and servers do not dedupe by Message-ID. The caller's delivery
ledger (one row per invoice x kind, marked sent only after ``send`` returns) decides what
to send; Message-IDs are deterministic (``rendering.email.invoice_message_id``) so the
rare duplicate after an ambiguous failure is recognisable by mail clients and people.
``OutboxMailer`` can dedupe (one file per Message-ID) and does.

Errors: connection drops, timeouts, 4xx replies -> ``TransientMailError`` (retry later);
5xx replies (bad recipient, auth refused, message rejected) -> ``PermanentMailError``. A
connection lost or timed out after the server answered 354 to DATA (from then on it holds the
whole message and may accept it) and before its final reply -> ``AmbiguousMailError``, which
must never be retried blindly.
"""

from __future__ import annotations

import contextlib
import functools
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from billing_pipeline.clients.errors import AmbiguousMailError, PermanentMailError, TransientMailError
from billing_pipeline.clients.files import write_once
from billing_pipeline.clients.rate_limit import TokenBucket

__all__ = ["SentMail", "Mailer", "OutboxMailer", "SMTPMailer", "eml_filename"]


@dataclass(frozen=True)
class SentMail:
    message_id: str
    created: bool  # False: the outbox already held this Message-ID (nothing sent)


@runtime_checkable
class Mailer(Protocol):
    def send(self, msg: EmailMessage) -> SentMail: ...


def _message_id(msg: EmailMessage) -> str:
    mid = msg.get("Message-ID")
    if not mid:
        raise ValueError("message has no Message-ID; build it with rendering.email.build_invoice_email")
    return str(mid).strip()


def eml_filename(message_id: str) -> str:
    """``<invoice-INV-1.invoice@example.com>`` -> ``invoice-INV-1.invoice@example.com.eml``."""
    name = re.sub(r"[^A-Za-z0-9._@+=-]", "_", message_id.strip().strip("<>"))
    name = name.lstrip(".") or "_"
    return name[:200] + ".eml"


class OutboxMailer:
    """Writes each message to ``folder/<message-id>.eml`` (CRLF, as it would go on the wire).

    Atomic and idempotent (``clients.files.write_once``): a message whose file exists is not
    written again (``created=False``).
    """

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)

    def path_for(self, message_id: str) -> Path:
        return self.folder / eml_filename(message_id)

    def send(self, msg: EmailMessage) -> SentMail:
        mid = _message_id(msg)
        wire = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
        return SentMail(mid, created=write_once(self.path_for(mid), wire))


Security = Literal["starttls", "ssl", "none"]


class _DataTracking:
    """Records whether the server answered 354 to the DATA command of the message being sent
    (``data_started``): from then on it holds the whole message, so a failure before its final
    reply leaves it unknown whether the message was accepted."""

    data_started = False
    _in_data = False

    def data(self, msg):
        self._in_data = True
        try:
            return super().data(msg)  # type: ignore[misc]
        finally:
            self._in_data = False

    def getreply(self):
        code, text = super().getreply()  # type: ignore[misc]
        if self._in_data and code == 354:
            self.data_started = True
        return code, text


@functools.cache
def _tracking(base: type) -> type:
    """``base`` (``smtplib.SMTP`` / ``SMTP_SSL``, looked up at connect time) with ``_DataTracking``."""
    return type(f"Tracking{base.__name__}", (_DataTracking, base), {})


def _classify(exc: BaseException) -> Exception:
    """SMTP/network exception -> Transient/PermanentMailError (no credentials in messages)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        transient = bool(codes) and all(400 <= c < 500 for c in codes)
        cls = TransientMailError if transient else PermanentMailError
        return cls(f"SMTP recipients refused: {sorted(exc.recipients)} codes {codes}", status=max(codes or [0]))
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return TransientMailError(f"SMTP server disconnected: {exc}")
    if isinstance(exc, smtplib.SMTPResponseException):
        code = exc.smtp_code
        msg = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        cls = TransientMailError if 400 <= code < 500 else PermanentMailError
        return cls(f"SMTP {code}: {msg[:300]}", code=str(code), status=code)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentMailError(f"SMTP TLS certificate rejected: {exc.verify_message}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentMailError(f"SMTP server does not support a required extension: {exc}")
    if isinstance(exc, (socket.timeout, TimeoutError, ConnectionError, OSError, smtplib.SMTPException)):
        return TransientMailError(f"SMTP connection error: {type(exc).__name__}: {exc}")
    return PermanentMailError(f"SMTP error: {type(exc).__name__}: {exc}")


class SMTPMailer:
    """Sends through an SMTP server.

    One ``send`` opens and closes its own connection; for a batch, reuse one::

        with mailer.session():
            for msg in messages:
                mailer.send(msg)

    Sessions are per thread: threads sharing one mailer each open their own connection.

    ``security``: ``"starttls"`` (port 587), ``"ssl"`` (implicit TLS, port 465) or
    ``"none"`` (local test servers only). TLS verifies certificates with the system store,
    or ``ca_file``; ``verify=False`` is for tests against self-signed servers.
    ``sent_log(message_id, refused_recipients)`` is called after each accepted message.
    ``rate_limit`` takes one token per message.
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        security: Security = "starttls",
        timeout: float = 30.0,
        sent_log: Callable[[str, dict], None] | None = None,
        *,
        ca_file: str | None = None,
        verify: bool = True,
        local_hostname: str | None = None,
        rate_limit: TokenBucket | None = None,
    ) -> None:
        if security not in ("starttls", "ssl", "none"):
            raise ValueError(f"security must be 'starttls', 'ssl' or 'none', not {security!r}")
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.security = security
        self.timeout = timeout
        self.sent_log = sent_log
        self.ca_file = ca_file
        self.verify = verify
        self.local_hostname = local_hostname
        self.rate_limit = rate_limit
        self._local = threading.local()  # this thread's session: conn, broken

    @property
    def _conn(self) -> smtplib.SMTP | None:
        return getattr(self._local, "conn", None)

    @_conn.setter
    def _conn(self, value: smtplib.SMTP | None) -> None:
        self._local.conn = value

    @property
    def _broken(self) -> bool:
        return getattr(self._local, "broken", False)

    @_broken.setter
    def _broken(self, value: bool) -> None:
        self._local.broken = value

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_local"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def __repr__(self) -> str:  # never show the password
        return (
            f"SMTPMailer(host={self.host!r}, port={self.port}, security={self.security!r}, username={self.username!r})"
        )

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        try:
            if self.security == "ssl":
                conn: smtplib.SMTP = _tracking(smtplib.SMTP_SSL)(
                    self.host,
                    self.port,
                    local_hostname=self.local_hostname,
                    timeout=self.timeout,
                    context=self._ssl_context(),
                )
            else:
                conn = _tracking(smtplib.SMTP)(
                    self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
                )
            try:
                conn.ehlo()
                if self.security == "starttls":
                    conn.starttls(context=self._ssl_context())
                    conn.ehlo()
                if self.username:
                    conn.login(self.username, self._password or "")
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.close()
                raise
            return conn
        except Exception as exc:
            raise _classify(exc) from None

    @contextlib.contextmanager
    def session(self) -> Iterator[SMTPMailer]:
        """Keep one connection open for every ``send`` inside the block."""
        if self._conn is not None:
            yield self
            return
        self._conn = self._connect()
        self._broken = False
        try:
            yield self
        finally:
            conn, self._conn = self._conn, None
            self._broken = False
            with contextlib.suppress(Exception):
                conn.quit()
            with contextlib.suppress(Exception):
                conn.close()

    def send(self, msg: EmailMessage) -> SentMail:
        mid = _message_id(msg)
        if self._conn is None:
            with self.session():
                return self._send(msg, mid)
        return self._send(msg, mid)

    def _send(self, msg: EmailMessage, mid: str) -> SentMail:
        if self._broken:  # an earlier send in this session lost the connection
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = self._connect()
            self._broken = False
        if self.rate_limit is not None:
            self.rate_limit.acquire()
        self._conn.data_started = False
        try:
            refused = self._conn.send_message(msg)
        except Exception as exc:
            if isinstance(exc, (smtplib.SMTPServerDisconnected, OSError)):
                self._broken = True
            if getattr(self._conn, "data_started", False) and not isinstance(exc, smtplib.SMTPResponseException):
                self._broken = True
                raise AmbiguousMailError(
                    f"SMTP: {type(exc).__name__} after the server had the whole message {mid} "
                    f"({exc}); it may have been accepted",
                    message_id=mid,
                ) from None
            raise _classify(exc) from None
        if self.sent_log is not None:
            self.sent_log(mid, dict(refused))
        return SentMail(mid, created=True)
