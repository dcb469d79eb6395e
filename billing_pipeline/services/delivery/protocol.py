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
  window (see ``Channel.commit_at_once`` and ``ambiguous_email``); it, and any failure after
  the server had the whole message (``AmbiguousMailError``), becomes an ``ambiguous`` row that
  no later claim takes unless the operator resends;
* transient errors (``DeliveryError.transient``) retry with exponential backoff and jitter,
  each retry a new claim (the row stays ``pending`` in between); permanent ones, and the last
  retry, set the row ``failed`` and open its dead letter (kind ``invoice_delivery``) in the same
  transaction. Every error is redacted.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from billing_pipeline.clients.errors import AmbiguousMailError, DeliveryError
from billing_pipeline.db import deliveries as ledger
from billing_pipeline.services.delivery.items import Item
from billing_pipeline.services.delivery.options import RetryPolicy
from billing_pipeline.services.delivery.results import ChannelResult, ChannelStatus

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

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
        retrying_failed = row is not None and row.status == "failed"
        try:
            ledger.claim(
                self.bind(), item.invoice_id, channel, row.attempts if row else None, retrying_failed=retrying_failed
            )
        except ledger.ClaimLost:
            return
        ledger.mark_failed(self.bind(), item.invoice_id, channel, error)

    def ambiguous_email(self, item: Item, carry: ledger.Finish | None) -> ChannelResult | None:
        """A pending e-mail row with a Message-ID: a run died between the claim before SMTP DATA
        and the commit after it. It becomes ``ambiguous`` (never resent by a later run)."""
        row = item.rows.get("email")
        if row is None or row.status != "pending" or not row.external_id:
            return None
        why = f"an earlier run stopped while sending it (attempt {row.attempts})"
        error = ambiguous_text(item, row.external_id, why)
        changed = ledger.mark_ambiguous(
            self.bind(),
            item.invoice_id,
            "email",
            error,
            external_id=row.external_id,
            seen_attempts=row.attempts,
            finish=carry,
        )
        if not changed:
            return ChannelResult("email", ChannelStatus.FAILED, error="changed by another run meanwhile")
        return ChannelResult("email", ChannelStatus.AMBIGUOUS, external_id=row.external_id, error=error)

    def attempt(
        self, item: Item, channel: Channel, carry: ledger.Finish | None, *, resend_ambiguous: bool = False
    ) -> tuple[ChannelResult, ledger.Finish | None]:
        """Run ``channel`` for ``item`` until it succeeds, fails for good, runs out of retries or
        may have been delivered (``ambiguous``, never retried)."""
        name = channel.name
        row = item.rows.get(name)
        seen = row.attempts if row is not None else None
        retrying_failed = row is not None and row.status == "failed"  # an operator's run: closes its dead letter
        tries = 0
        while True:
            prepared, marker, prepare_error = None, None, None
            try:
                prepared, marker = channel.prepare(item)
            except Exception as exc:  # noqa: BLE001 - recorded as this attempt's failure below
                prepare_error = exc
            try:
                seen = ledger.claim(
                    self.bind(),
                    item.invoice_id,
                    name,
                    seen,
                    finish=carry,
                    sending=marker,
                    resend_ambiguous=resend_ambiguous,
                    retrying_failed=retrying_failed,
                )
            except ledger.ClaimLost as exc:
                return ChannelResult(name, ChannelStatus.FAILED, tries, error=str(exc)), None
            carry, retrying_failed = None, False  # committed with the claim
            tries += 1
            try:
                if prepare_error is not None:
                    raise prepare_error
                external_id, checksum = channel.perform(item, prepared)
            except Skip as skip:
                done = ledger.Finish(item.invoice_id, name, None, None, "skipped")
                return ChannelResult(name, ChannelStatus.SKIPPED, tries, error=str(skip)), done
            except AmbiguousMailError as exc:
                return self._ambiguous(item, name, exc, tries), None
            except Exception as exc:  # noqa: BLE001 - classified below, isolated per invoice
                error = self.error_text(exc)
                if isinstance(exc, DeliveryError) and exc.transient and tries < self.retry.max_attempts:
                    ledger.mark_retrying(self.bind(), item.invoice_id, name, error)
                    delay = self.retry.delay(tries, self.rand())
                    log.info(
                        "invoice %s %s: transient error (%s), retry %d in %.2fs", item.number, name, error, tries, delay
                    )
                    self.sleep(delay)
                    continue
                ledger.mark_failed(self.bind(), item.invoice_id, name, error)  # and its dead letter
                log.warning("invoice %s %s failed after %d attempt(s): %s", item.number, name, tries, error)
                return ChannelResult(name, ChannelStatus.FAILED, tries, error=error), None
            result = ChannelResult(name, ChannelStatus.SUCCEEDED, tries, external_id=external_id)
            if channel.commit_at_once:
                ledger.mark_succeeded(self.bind(), item.invoice_id, name, external_id=external_id, checksum=checksum)
                return result, None
            return result, ledger.Finish(item.invoice_id, name, external_id, checksum)

    def _ambiguous(self, item: Item, channel: str, exc: AmbiguousMailError, tries: int) -> ChannelResult:
        error = ambiguous_text(item, exc.message_id, self.error_text(exc))
        ledger.mark_ambiguous(self.bind(), item.invoice_id, channel, error, external_id=exc.message_id)
        log.warning("invoice %s %s: %s", item.number, channel, error)
        return ChannelResult(channel, ChannelStatus.AMBIGUOUS, tries, external_id=exc.message_id, error=error)


def ambiguous_text(item: Item, message_id: str, why: str) -> str:
    """The ledger's and the report's words for an e-mail that may have been delivered."""
    return (
        f"ambiguous: {message_id} may have been delivered ({why}). It is not sent again: check the mail "
        f"server log for this Message-ID, then run `billing-pipeline deliveries resolve {item.number} "
        "--channel email --sent` (it was delivered) or `--resend` (it was not; same Message-ID)."
    )
