"""One notification dispatcher for every notice: reminders now; receipts, failure notices, alerts later.

    dispatcher = NotificationDispatcher(engine, {"email": EmailChannel(mailer, from_addr, domain)})
    result = dispatcher.send(Notification(dedupe_key="reminder:42:overdue:customer", kind="reminder", ...))

Exactly once per ``(dedupe_key, channel)``: ``db.notifications`` claims the ledger row before the
side effect and marks it after; calling ``send`` again with the same key (every run, while the
caller's business condition still holds) sends only what has not been sent, retries what
``failed`` until ``max_attempts``, then gives up into a dead letter. Callers re-check their own
stop conditions before calling ``send`` (a paid invoice gets no retried reminder); the
dispatcher knows nothing of invoices.

Channels are small classes (``NotificationChannel``): ``external_id`` (deterministic, from the
dedupe key: the e-mail's Message-ID) and ``deliver``, which raises ``TransientChannelError``
(retry later), ``PermanentChannelError`` (never retried: dead letter now) or
``AmbiguousChannelError`` (may have been delivered: never re-sent without an operator). One
channel failing never stops the others: each one's outcome is in ``DeliveryResult``. A channel
the notice names but the dispatcher lacks (Slack before it exists) is a dead letter, not a crash.

``SmsChannel`` sends ``Notification.sms_text`` (or the subject) to ``Recipient.phone``, fitted to
one segment (``rendering.sms.fit_sms``). The SMS provider (Twilio) has no idempotency key, so the
ledger row claimed before the send is the only guard: a lost answer is ``ambiguous``, never
re-sent by a run. A channel may name its own address (``address``: the phone for SMS), which the
ledger and a dead letter record instead of the e-mail address.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.charset import QP, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from typing import Protocol

from billing_pipeline.clients.errors import AmbiguousMailError, MailError, PermanentMailError, TransientMailError
from billing_pipeline.clients.mailer import Mailer
from billing_pipeline.clients.sms import AmbiguousSmsError, PermanentSmsError, SmsSender, TransientSmsError
from billing_pipeline.clock import utc_now
from billing_pipeline.db import notifications as ledger
from billing_pipeline.rendering.sms import fit_sms

logger = logging.getLogger(__name__)

MAX_DEDUPE_KEY = 200
DEFAULT_MAX_ATTEMPTS = 3
SETTLED = ("sent", "dead", "dismissed")


class TransientChannelError(RuntimeError):
    """Not delivered; worth trying again later."""


class PermanentChannelError(RuntimeError):
    """Not delivered and never will be as is (bad address, rejected): dead letter."""


class AmbiguousChannelError(RuntimeError):
    """May have been delivered: never re-sent automatically."""


@dataclass(frozen=True)
class Recipient:
    address: str
    name: str = ""
    phone: str | None = None  # E.164, for the sms channel


@dataclass(frozen=True)
class Notification:
    dedupe_key: str  # our ids only ("reminder:42:overdue:customer"): the same notice, the same key
    kind: str  # reminder | receipt | payment_failed | alert ...
    audience: str  # customer | account_manager | operator ...
    recipient: Recipient
    channels: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    sms_text: str | None = None  # the short form for SMS (default: the subject)

    def __post_init__(self) -> None:
        if not self.dedupe_key or len(self.dedupe_key) > MAX_DEDUPE_KEY or any(c.isspace() for c in self.dedupe_key):
            raise ValueError(f"dedupe_key must be 1-{MAX_DEDUPE_KEY} characters without spaces: {self.dedupe_key!r}")
        if not self.channels:
            raise ValueError(f"notification {self.dedupe_key} names no channel")


class NotificationChannel(Protocol):
    name: str

    def external_id(self, notification: Notification) -> str | None: ...

    def deliver(self, notification: Notification, external_id: str | None) -> str | None: ...


@dataclass(frozen=True)
class ChannelOutcome:
    channel: str
    status: str  # sent | already_sent | failed | dead | ambiguous | dismissed | busy
    attempts: int
    error: str | None = None
    external_id: str | None = None
    changed: bool = True  # False: the ledger already held this outcome (nothing tried now)


@dataclass(frozen=True)
class DeliveryResult:
    dedupe_key: str
    outcomes: tuple[ChannelOutcome, ...]

    @property
    def delivered(self) -> bool:
        """Every channel is sent (now or before)."""
        return all(o.status in ("sent", "already_sent") for o in self.outcomes)

    @property
    def settled(self) -> bool:
        """No channel will be tried again without an operator."""
        return all(o.status in ("sent", "already_sent", "dead", "dismissed", "ambiguous") for o in self.outcomes)


_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP


class EmailChannel:
    """E-mail through the project's ``Mailer`` (SMTP or the outbox folder, as settings choose).

    Message-ID ``<{dedupe key, ':' -> '.'}@{domain}>``: the same notice always has the same ID, so a
    duplicate after an ambiguous failure is recognisable and the outbox writes it once.
    """

    name = "email"

    def __init__(self, mailer: Mailer, from_addr: str, message_id_domain: str, reply_to: str | None = None) -> None:
        self.mailer, self.from_addr, self.domain, self.reply_to = mailer, from_addr, message_id_domain, reply_to

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """One SMTP connection for the sends inside (when the mailer has sessions and the server answers;
        otherwise each send connects on its own and fails on its own)."""
        with contextlib.ExitStack() as stack:
            opener = getattr(self.mailer, "session", None)
            if opener is not None:
                try:
                    stack.enter_context(opener())
                except MailError as exc:
                    logger.warning("no e-mail session (each message will try on its own): %s", exc)
            yield

    def external_id(self, notification: Notification) -> str:
        return f"<{_ID_UNSAFE.sub('_', notification.dedupe_key.replace(':', '.'))}@{self.domain}>"

    def message(self, notification: Notification, message_id: str, date: dt.datetime | None = None) -> MIMEMultipart:
        msg = MIMEMultipart("alternative")
        msg.attach(MIMEText(notification.text, "plain", _UTF8))
        if notification.html is not None:
            msg.attach(MIMEText(notification.html, "html", _UTF8))
        msg["From"] = _one_line(self.from_addr)
        to = notification.recipient
        msg["To"] = email.utils.formataddr((_one_line(to.name), _one_line(to.address)), charset="utf-8")
        if self.reply_to:
            msg["Reply-To"] = _one_line(self.reply_to)
        subject = _one_line(notification.subject)
        msg["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")
        msg["Date"] = email.utils.format_datetime((date or utc_now()).astimezone(dt.UTC))
        msg["Message-ID"] = message_id
        msg["X-Billing-Notification"] = notification.dedupe_key
        for part in msg.get_payload():
            del part["MIME-Version"]
        return msg

    def deliver(self, notification: Notification, external_id: str | None) -> str:
        assert external_id is not None
        try:
            sent = self.mailer.send(self.message(notification, external_id))  # type: ignore[arg-type]
        except AmbiguousMailError as exc:
            raise AmbiguousChannelError(str(exc)) from None
        except TransientMailError as exc:
            raise TransientChannelError(str(exc)) from None
        except (PermanentMailError, ValueError) as exc:
            raise PermanentChannelError(str(exc)) from None
        return sent.message_id


def _one_line(value: str) -> str:
    return " ".join(str(value).split())


@contextlib.contextmanager
def channel_errors(
    transient: type[Exception], ambiguous: type[Exception], permanent: type[Exception]
) -> Iterator[None]:
    """A client's three failure kinds as the dispatcher's (Slack, SMS: each client has its own classes)."""
    try:
        yield
    except transient as exc:
        raise TransientChannelError(str(exc)) from None
    except ambiguous as exc:
        raise AmbiguousChannelError(str(exc)) from None
    except permanent as exc:
        raise PermanentChannelError(str(exc)) from None


class SmsChannel:
    """A short text to the recipient's phone through an ``SmsSender`` (``clients.sms``: Twilio)."""

    name = "sms"

    def __init__(self, sender: SmsSender) -> None:
        self.sender = sender

    def address(self, notification: Notification) -> str:
        return notification.recipient.phone or "(no phone)"

    def external_id(self, notification: Notification) -> None:
        return None  # Twilio names the message (its sid) only in its answer

    def deliver(self, notification: Notification, external_id: str | None) -> str:
        phone = notification.recipient.phone
        if not phone:
            raise PermanentChannelError(f"{notification.dedupe_key}: the recipient has no phone number for SMS")
        with channel_errors(TransientSmsError, AmbiguousSmsError, PermanentSmsError):
            return self.sender.send(phone, fit_sms(notification.sms_text or notification.subject))


class NotificationDispatcher:
    """Sends notices through named channels, each exactly once per dedupe key (see the module doc)."""

    def __init__(
        self, engine, channels: Mapping[str, NotificationChannel], *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.engine, self.channels, self.max_attempts = engine, dict(channels), max_attempts

    @contextlib.contextmanager
    def session(self) -> Iterator[NotificationDispatcher]:
        """Keep each channel's connection open for a batch of ``send`` calls (channels without one: no-op)."""
        with contextlib.ExitStack() as stack:
            for channel in self.channels.values():
                opener = getattr(channel, "session", None)
                if opener is not None:
                    stack.enter_context(opener())
            yield self

    def send(self, notification: Notification) -> DeliveryResult:
        outcomes = []
        for channel in notification.channels:
            try:
                outcomes.append(self._send_one(notification, channel))
            except Exception as exc:  # a broken channel (or database hiccup) never stops the others
                logger.exception("notification %s via %s failed", notification.dedupe_key, channel)
                outcomes.append(ChannelOutcome(channel, "failed", 0, f"{type(exc).__name__}: {exc}"))
        return DeliveryResult(notification.dedupe_key, tuple(outcomes))

    def _address(self, n: Notification, channel_name: str) -> str:
        address_of = getattr(self.channels.get(channel_name), "address", None)
        return address_of(n) if address_of is not None else n.recipient.address

    def _payload(self, n: Notification, channel_name: str) -> dict[str, object]:
        recipient = self._address(n, channel_name)
        return {"kind": n.kind, "audience": n.audience, "recipient": recipient, "subject": n.subject}

    def _send_one(self, n: Notification, channel_name: str) -> ChannelOutcome:
        key, engine = n.dedupe_key, self.engine
        row = ledger.get_row(engine, key, channel_name)
        if row is not None and row.status != "failed":
            return self._settled(n, row)
        channel = self.channels.get(channel_name)
        external_id = channel.external_id(n) if channel is not None else None
        address = self._address(n, channel_name)
        try:
            attempt = ledger.claim(
                engine, key, channel_name, kind=n.kind, recipient=address, seen=row, external_id=external_id
            )
        except ledger.ClaimLost as exc:
            return ChannelOutcome(channel_name, "busy", row.attempts if row else 0, str(exc), changed=False)
        if channel is None:
            return self._dead(n, channel_name, attempt, f"no {channel_name!r} channel is configured")
        try:
            sent_id = channel.deliver(n, external_id)
        except TransientChannelError as exc:
            if attempt >= self.max_attempts:
                return self._dead(n, channel_name, attempt, f"gave up after {attempt} attempts: {exc}")
            ledger.mark_failed(engine, key, channel_name, attempt, str(exc))
            return ChannelOutcome(channel_name, "failed", attempt, str(exc), external_id)
        except AmbiguousChannelError as exc:
            ledger.give_up(engine, key, channel_name, str(exc), self._payload(n, channel_name), status="ambiguous")
            return ChannelOutcome(channel_name, "ambiguous", attempt, str(exc), external_id)
        except PermanentChannelError as exc:
            return self._dead(n, channel_name, attempt, str(exc))
        ledger.mark_sent(engine, key, channel_name, attempt, sent_id)
        return ChannelOutcome(channel_name, "sent", attempt, None, sent_id)

    def _settled(self, n: Notification, row: ledger.NotificationRow) -> ChannelOutcome:
        """The outcome of a row no send may claim: already sent, dead, dismissed, ambiguous, or left pending."""
        if row.status == "pending":  # a run stopped between its claim and its result (or one is sending now)
            why = "found pending: an earlier run stopped after claiming it; it may have been delivered"
            payload = self._payload(n, row.channel)
            ledger.give_up(
                self.engine, n.dedupe_key, row.channel, why, payload, status="ambiguous", seen_attempts=row.attempts
            )
            return ChannelOutcome(row.channel, "ambiguous", row.attempts, why, row.external_id)
        status = "already_sent" if row.status == "sent" else row.status
        return ChannelOutcome(row.channel, status, row.attempts, row.last_error, row.external_id, changed=False)

    def _dead(self, n: Notification, channel_name: str, attempt: int, error: str) -> ChannelOutcome:
        ledger.give_up(self.engine, n.dedupe_key, channel_name, error, self._payload(n, channel_name))
        logger.warning("notification %s via %s is a dead letter: %s", n.dedupe_key, channel_name, error)
        return ChannelOutcome(channel_name, "dead", attempt, error)


__all__ = [
    "AmbiguousChannelError",
    "ChannelOutcome",
    "DeliveryResult",
    "EmailChannel",
    "Notification",
    "NotificationChannel",
    "NotificationDispatcher",
    "PermanentChannelError",
    "Recipient",
    "SmsChannel",
    "TransientChannelError",
    "channel_errors",
]
