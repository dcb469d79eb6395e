"""The SMS sender resource (``SMS_PROVIDER``), one class per implementation, chosen in ``settings.sms_resource``.

``NoSmsResource`` (the default) has no sender: a dunning step that names ``sms`` then gets a dead
letter "no 'sms' channel is configured" for organizations with a phone, and e-mail as usual.
``TwilioSmsResource`` builds ``clients.sms.TwilioSmsClient``; its Auth Token is a ``dg.EnvVar``
read when a run starts, so loading the definitions needs no secret.
"""

from __future__ import annotations

import dagster as dg

from billing_pipeline.clients.sms import SmsSender, TwilioSmsClient


class SmsResource(dg.ConfigurableResource):
    """Where SMS notices go (base class): ``sender()`` is None when SMS is off."""

    def sender(self) -> SmsSender | None:
        raise NotImplementedError


class NoSmsResource(SmsResource):
    """SMS off (``SMS_PROVIDER=none``)."""

    def sender(self) -> None:
        return None


class TwilioSmsResource(SmsResource):
    """Twilio's Messages API (``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN``, ``TWILIO_FROM``, ``TWILIO_API_BASE``)."""

    account_sid: str
    auth_token: str  # dg.EnvVar("TWILIO_AUTH_TOKEN")
    from_number: str
    api_base: str = "https://api.twilio.com"
    timeout_seconds: int = 10

    def sender(self) -> SmsSender:
        return TwilioSmsClient(
            self.account_sid,
            self.auth_token,
            self.from_number,
            api_base=self.api_base,
            timeout_seconds=float(self.timeout_seconds),
        )
