"""Operator alerts through the notification dispatcher: Slack, in-app and e-mail channels, routing,
and the alert store that lets a later tick finish what a channel could not send.

    service = AlertService(engine, dispatcher_for_alerts(engine, routing, slack=..., mailer=...), routing)
    service.raise_alert(alert)     # stored, then sent once per (dedupe key, channel)
    service.redeliver()            # alerts with a channel still failing: sent again (ledger dedupes)

Routing (``ALERT_CHANNELS``, ``ALERT_EMAIL_TO``) is frozen into the stored alert when it is
raised. A channel failing never blocks the others (the dispatcher's rule); a transient failure
stays ``failed`` in the ledger and is retried by ``redeliver`` up to ``NOTIFICATION_MAX_ATTEMPTS``,
then it is a dead letter. An alert is *settled* once no channel will be tried again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from billing_pipeline.clients.mailer import Mailer
from billing_pipeline.clients.slack import (
    AmbiguousSlackError,
    PermanentSlackError,
    SlackPoster,
    TransientSlackError,
)
from billing_pipeline.db import alerts as store
from billing_pipeline.db import inbox
from billing_pipeline.domain.alerts import Alert
from billing_pipeline.services.notifications import (
    DeliveryResult,
    EmailChannel,
    Notification,
    NotificationChannel,
    NotificationDispatcher,
    Recipient,
    channel_errors,
)

logger = logging.getLogger(__name__)

ALERT_CHANNELS = ("email", "slack", "inapp")
_LEVEL_ICON = {"error": ":red_circle:", "warning": ":warning:", "info": ":large_green_circle:"}


class SlackChannel:
    """Posts the notice's subject and text to the incoming webhook (``clients.slack``)."""

    name = "slack"

    def __init__(self, poster: SlackPoster) -> None:
        self.poster = poster

    def external_id(self, notification: Notification) -> None:
        return None  # a webhook returns no message id

    def deliver(self, notification: Notification, external_id: str | None) -> str | None:
        icon = _LEVEL_ICON.get(notification.metadata.get("level", "info"), "")
        text = f"{icon} *{notification.subject}*\n{notification.text}".strip()
        with channel_errors(TransientSlackError, AmbiguousSlackError, PermanentSlackError):
            self.poster.post(text)
        return None


class InAppChannel:
    """Writes the notice into ``notifications_inbox`` (once per dedupe key); returns its inbox id."""

    name = "inapp"

    def __init__(self, engine) -> None:
        self.engine = engine

    def external_id(self, notification: Notification) -> None:
        return None

    def deliver(self, notification: Notification, external_id: str | None) -> str:
        item_id = inbox.add(
            self.engine,
            dedupe_key=notification.dedupe_key,
            kind=notification.kind,
            level=notification.metadata.get("level", "info"),
            subject=notification.subject,
            text=notification.text,
            link=notification.metadata.get("link") or None,
        )
        return f"inbox:{item_id}"


@dataclass(frozen=True)
class AlertRouting:
    """Which channels get operator alerts, and the e-mail address when ``email`` is one."""

    channels: tuple[str, ...]
    email_to: str | None = None

    def __post_init__(self) -> None:
        unknown = [c for c in self.channels if c not in ALERT_CHANNELS]
        if unknown:
            raise ValueError(f"ALERT_CHANNELS: unknown channel {unknown[0]!r}; choose from {', '.join(ALERT_CHANNELS)}")
        if "email" in self.channels and not self.email_to:
            raise ValueError("ALERT_EMAIL_TO: required when ALERT_CHANNELS includes email")


def alert_channels(
    engine, *, slack: SlackPoster | None, mailer: Mailer | None, email_from: str
) -> dict[str, NotificationChannel]:
    """The channels that can be built: in-app always, Slack with a webhook, e-mail with a mailer.
    A routed channel missing here is a dead letter ("not configured"), not a crash."""
    channels: dict[str, NotificationChannel] = {"inapp": InAppChannel(engine)}
    if slack is not None:
        channels["slack"] = SlackChannel(slack)
    if mailer is not None:
        domain = email_from.rsplit("@", 1)[-1].strip(" >")
        channels["email"] = EmailChannel(mailer, email_from, domain)
    return channels


class AlertService:
    def __init__(self, engine, dispatcher: NotificationDispatcher, routing: AlertRouting) -> None:
        self.engine, self.dispatcher, self.routing = engine, dispatcher, routing

    def raise_alert(self, alert: Alert) -> DeliveryResult | None:
        """Store the alert (first time only) and send it on its channels; None when none is routed."""
        if not self.routing.channels:
            logger.info("alert %s not sent: ALERT_CHANNELS is empty", alert.dedupe_key)
            return None
        row = store.record(
            self.engine,
            dedupe_key=alert.dedupe_key,
            kind=alert.kind,
            level=alert.level,
            subject=alert.subject,
            text=alert.text,
            link=alert.link,
            channels=self.routing.channels,
        )
        return self._send(row)

    def redeliver(self, limit: int = 100) -> list[DeliveryResult]:
        """Send again every stored alert that is not settled (the ledger skips what was sent)."""
        return [self._send(row) for row in store.unsettled(self.engine, limit=limit)]

    def _send(self, row: store.AlertRow) -> DeliveryResult:
        result = self.dispatcher.send(self._notification(row))  # a settled alert: already_sent, nothing new
        if row.settled_at is None and result.settled:
            store.settle(self.engine, row.dedupe_key)
        return result

    def _notification(self, row: store.AlertRow) -> Notification:
        metadata: Mapping[str, str] = {"level": row.level, "link": row.link or ""}
        return Notification(
            dedupe_key=row.dedupe_key,
            kind=row.kind,
            audience="operator",
            recipient=Recipient(self.routing.email_to or "operators"),
            channels=row.channels,
            subject=row.subject,
            text=row.text,
            metadata=metadata,
        )


__all__ = ["ALERT_CHANNELS", "AlertRouting", "AlertService", "InAppChannel", "SlackChannel", "alert_channels"]
