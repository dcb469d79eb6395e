"""The ledger protocol of one channel for one invoice: claim -> perform -> finish, with retries.

* the row is **claimed** (``pending``, ``attempts + 1``, committed) before every side effect;
  a claim only wins if the row still has the attempt count read, so two runs racing on one
  invoice cannot both go ahead;
* right after the side effect the row is set ``succeeded`` (external id, checksum). That
  success is carried into the transaction of the same thread's next claim (or written when
  the thread ends), one commit per invoice instead of two: a crash in between leaves the row
  ``pending`` and the idempotent side effect is repeated harmlessly by the next run;
* **e-mail** is not idempotent: its Message-ID is committed with the claim right before DATA
  and its success is committed at once. A ``pending`` row with a Message-ID is the ambiguous
  window (see ``Channel.commit_at_once`` and ``ambiguous_email``);
* transient errors (``DeliveryError.transient``) retry with exponential backoff and jitter,
  each retry a new claim; permanent ones are recorded at once. Every error is redacted.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

from billing_pipeline.clients.errors import DeliveryError
from billing_pipeline.db import deliveries as ledger
from billing_pipeline.services.delivery.items import Item
from billing_pipeline.services.delivery.options import RetryPolicy
from billing_pipeline.services.delivery.results import ChannelResult, ChannelStatus

log = logging.getLogger(__name__)


class Skip(Exception):
    """Raised by a channel's ``perform``: nothing to do (recorded as skipped)."""


class Channel(Protocol):
    name: str
    commit_at_once: bool  # e-mail: the success is committed right away, never carried

    def prepare(self, item: Item) -> tuple[Any, str | None]:
        """What ``perform`` needs, built before the claim, and the marker committed with it."""
        ...

    def perform(self, item: Item, prepared: Any) -> tuple[str | None, str | None]:
        """The side effect: returns (external id, checksum)."""
        ...


class LedgerProtocol:
    def __init__(
        self,
        engine: Engine,
        *,
        retry: RetryPolicy,
        redact: Callable[[str], str],
        sleep: Callable[[float], None],
        rand: Callable[[], float],
    ) -> None:
        self.engine = engine
        self.retry = retry
        self.redact = redact
        self.sleep = sleep
        self.rand = rand
        self._local = threading.local()

    def bind(self) -> Engine | Connection:
        """This thread's kept connection (``connection()``), else the engine."""
        return getattr(self._local, "conn", None) or self.engine

    @contextlib.contextmanager
    def connection(self) -> Iterator[None]:
        """Keep one database connection for this thread's ledger writes (a broken one reconnects)."""
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        with self.engine.connect() as conn:
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    def flush(self, carry: ledger.Finish | None) -> None:
        if carry is not None:
            ledger.write_finish(self.bind(), carry)

    def error_text(self, exc: BaseException) -> str:
        return self.redact(f"{type(exc).__name__}: {exc}")

    def record_failure(self, item: Item, channel: str, error: str) -> None:
        """A failure that happened without a claim (e.g. rendering): claim, then mark failed."""
        row = item.rows.get(channel)
        try:
            ledger.claim(self.bind(), item.invoice_id, channel, row.attempts if row else None)
        except ledger.ClaimLost:
            return
        ledger.mark_failed(self.bind(), item.invoice_id, channel, error)

    def ambiguous_email(self, item: Item, carry: ledger.Finish | None) -> ChannelResult | None:
        """A pending e-mail row with a Message-ID: a run died between SMTP DATA and the commit."""
        row = item.rows.get("email")
        if row is None or row.status != "pending" or not row.external_id:
            return None
        error = (
            f"ambiguous: an earlier run stopped while sending {row.external_id} (attempt {row.attempts}); "
            "it may have been delivered. Check the mail server log for this Message-ID, then either mark "
            "the row succeeded or re-run with resend_ambiguous_email=true (same Message-ID)."
        )
        ledger.mark_failed(self.bind(), item.invoice_id, "email", error, keep_external_id=True, finish=carry)
        return ChannelResult("email", ChannelStatus.FAILED, error=error)

    def attempt(
        self, item: Item, channel: Channel, carry: ledger.Finish | None
    ) -> tuple[ChannelResult, ledger.Finish | None]:
        """Run ``channel`` for ``item`` until it succeeds, fails for good or runs out of retries."""
        name = channel.name
        row = item.rows.get(name)
        seen = row.attempts if row is not None else None
        tries = 0
        while True:
            prepared, marker, prepare_error = None, None, None
            try:
                prepared, marker = channel.prepare(item)
            except Exception as exc:  # noqa: BLE001 - recorded as this attempt's failure below
                prepare_error = exc
            try:
                seen = ledger.claim(self.bind(), item.invoice_id, name, seen, finish=carry, sending=marker)
            except ledger.ClaimLost as exc:
                return ChannelResult(name, ChannelStatus.FAILED, tries, error=str(exc)), None
            carry = None  # committed with the claim
            tries += 1
            try:
                if prepare_error is not None:
                    raise prepare_error
                external_id, checksum = channel.perform(item, prepared)
            except Skip as skip:
                done = ledger.Finish(item.invoice_id, name, None, None, "skipped")
                return ChannelResult(name, ChannelStatus.SKIPPED, tries, error=str(skip)), done
            except Exception as exc:  # noqa: BLE001 - classified below, isolated per invoice
                error = self.error_text(exc)
                ledger.mark_failed(self.bind(), item.invoice_id, name, error)
                if isinstance(exc, DeliveryError) and exc.transient and tries < self.retry.max_attempts:
                    delay = self.retry.delay(tries, self.rand())
                    log.info(
                        "invoice %s %s: transient error (%s), retry %d in %.2fs", item.number, name, error, tries, delay
                    )
                    self.sleep(delay)
                    continue
                log.warning("invoice %s %s failed after %d attempt(s): %s", item.number, name, tries, error)
                return ChannelResult(name, ChannelStatus.FAILED, tries, error=error), None
            result = ChannelResult(name, ChannelStatus.SUCCEEDED, tries, external_id=external_id)
            if channel.commit_at_once:
                ledger.mark_succeeded(self.bind(), item.invoice_id, name, external_id=external_id, checksum=checksum)
                return result, None
            return result, ledger.Finish(item.invoice_id, name, external_id, checksum)
