"""``InvoiceDeliveryService``: one method per channel, each over a batch of invoice ids.

The Dagster delivery job is the only driver: its ops call ``render_pdfs``, ``store_pdfs``,
``sync_payments``, ``send_emails`` and ``report`` in that order, each with the run's invoice
ids. Every method reads the invoices and the ledger itself, and works only on invoices whose
earlier channels are final in the ledger (``succeeded`` / ``skipped``); the others are
``blocked`` (their e-mail never goes out with a wrong Stripe total or a missing PDF). One
invoice's failure never stops the others.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from billing_pipeline.clients.documents import DocumentStore
from billing_pipeline.clients.mailer import Mailer, OutboxMailer
from billing_pipeline.clients.payments import PaymentGateway
from billing_pipeline.clients.redaction import Redactor
from billing_pipeline.db import deliveries as ledger
from billing_pipeline.rendering.seller import Seller
from billing_pipeline.services.delivery.channels import EmailChannel, PaymentChannel, PdfSource, StoreChannel
from billing_pipeline.services.delivery.items import Item, PdfSpool, load_items
from billing_pipeline.services.delivery.options import DeliveryOptions
from billing_pipeline.services.delivery.protocol import LedgerProtocol
from billing_pipeline.services.delivery.render import Render, render_all, render_invoice_pdf, render_pool
from billing_pipeline.services.delivery.results import ChannelReport, ChannelResult, ChannelStatus, InvoiceDelivery

if TYPE_CHECKING:
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

_PDF_FINISH_BATCH = 100  # pdf successes written per ledger transaction
DISMISSED = "failed; its dead letter was dismissed by an operator: never delivered again"


class InvoiceDeliveryService:
    """``store`` / ``gateway`` / ``mailer`` may be None when their channel is disabled.
    ``sleep`` and ``rand`` drive the retry backoff (tests pass fakes)."""

    def __init__(
        self,
        engine: Engine,
        *,
        seller: Seller,
        options: DeliveryOptions | None = None,
        store: DocumentStore | None = None,
        gateway: PaymentGateway | None = None,
        mailer: Mailer | None = None,
        secrets: Iterable[str | None] = (),
        render: Render = render_invoice_pdf,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.engine = engine
        self.seller = seller
        self.options = options or DeliveryOptions()
        self.store = store
        self.gateway = gateway
        self.mailer = mailer
        self.redact = Redactor(secrets)
        self.render = render
        self.spool = PdfSpool(self.options.spool_dir)
        self.protocol = LedgerProtocol(engine, retry=self.options.retry, redact=self.redact, sleep=sleep, rand=rand)
        for channel, client in (("s3", store), ("stripe", gateway), ("email", mailer)):
            if channel in self.options.channels and client is None:
                raise ValueError(f"channel {channel!r} is enabled but no client was given")

    @property
    def dry_run(self) -> bool:
        return self.options.dry_run

    def _pdfs(self) -> PdfSource:
        return PdfSource(self.spool, self.render, self.seller, self.store)

    # -- which invoices a step works on --------------------------------------------------------
    def _precheck(self, item: Item, channel: str) -> ChannelResult | None:
        """The result of an invoice this step does not touch (or None: it has work to do)."""
        if item.error:
            return ChannelResult(channel, ChannelStatus.BLOCKED, error=item.error)
        row = item.rows.get(channel)
        if row is not None and row.done:
            return ChannelResult(channel, ChannelStatus.ALREADY_DONE, external_id=row.external_id)
        if row is not None and row.dismissed:
            return ChannelResult(channel, ChannelStatus.FAILED, error=DISMISSED)
        if row is not None and row.status == ledger.AMBIGUOUS and not self._resends_ambiguous:
            return ChannelResult(channel, ChannelStatus.AMBIGUOUS, external_id=row.external_id, error=row.last_error)
        if self.dry_run:
            return None
        waiting = [c for c in self.options.before(channel) if not item.done(c)]
        if waiting:
            return ChannelResult(channel, ChannelStatus.BLOCKED, error=f"{waiting[0]} not done")
        return None

    def _needs_pdf(self, item: Item) -> bool:
        if item.error or "pdf" not in self.options.channels:
            return False
        if self.dry_run or not item.done("pdf"):
            return True
        needed = ("s3" in self.options.channels and not item.done("s3")) or (
            "email" in self.options.channels
            and not item.done("email")
            and not ("s3" in self.options.channels and item.done("s3"))
        )
        return needed and not self.spool.has(item.key)

    # -- pdf ------------------------------------------------------------------------------------
    def render_pdfs(self, invoice_ids: Sequence[int]) -> ChannelReport:
        """Render the PDF of every invoice that still needs one, in ``render_workers`` processes,
        each written to the spool as it is finished; the pdf row records its key and checksum."""
        report = ChannelReport("pdf")
        if "pdf" not in self.options.channels:
            return report
        items = load_items(self.engine, invoice_ids)
        todo = []
        for item in items:
            pdf_row = item.rows.get("pdf")
            if pdf_row is not None and pdf_row.dismissed:
                report.results[item.invoice_id] = ChannelResult("pdf", ChannelStatus.FAILED, error=DISMISSED)
            elif self._needs_pdf(item):
                todo.append(item)
            elif item.error:
                report.results[item.invoice_id] = ChannelResult("pdf", ChannelStatus.BLOCKED, error=item.error)
            else:
                row = item.rows["pdf"]
                report.results[item.invoice_id] = ChannelResult(
                    "pdf", ChannelStatus.ALREADY_DONE, external_id=row.external_id
                )
        jobs = [
            (self.render, i.invoice, i.org, self.seller, None if self.dry_run else str(self.spool.path(i.key)))
            for i in todo
        ]
        finishes: list[ledger.Finish] = []
        with render_pool(self.options.render_workers if len(jobs) > 8 else 0) as pool:
            for item, (sha, error) in zip(todo, render_all(jobs, pool), strict=True):
                report.results[item.invoice_id] = self._rendered(item, sha, error, finishes)
                if len(finishes) >= _PDF_FINISH_BATCH:
                    ledger.write_finishes(self.engine, finishes)
                    finishes.clear()
        if finishes:
            ledger.write_finishes(self.engine, finishes)
        return report

    def _rendered(self, item: Item, sha: str | None, error: str | None, finishes: list[ledger.Finish]) -> ChannelResult:
        if error is not None:
            error = self.redact(error)
            log.warning("invoice %s: PDF failed: %s", item.number, error)
            if not self.dry_run:
                self.protocol.record_failure(item, "pdf", error)
            return ChannelResult("pdf", ChannelStatus.FAILED, error=error)
        if self.dry_run:
            return ChannelResult("pdf", ChannelStatus.DRY_RUN)
        row = item.rows.get("pdf")
        if row is not None and row.done:
            if row.checksum and row.checksum != sha and not item.done("s3"):
                log.warning("invoice %s renders differently than when first delivered", item.number)
            return ChannelResult("pdf", ChannelStatus.ALREADY_DONE, external_id=row.external_id)
        # Rendering has no side effect outside this machine: nothing to claim.
        finishes.append(ledger.Finish(item.invoice_id, "pdf", item.key, sha, count_attempt=True))
        return ChannelResult("pdf", ChannelStatus.SUCCEEDED, 1, external_id=item.key)

    # -- s3, stripe, email ------------------------------------------------------------------------
    def store_pdfs(self, invoice_ids: Sequence[int]) -> ChannelReport:
        """Store each rendered PDF under its write-once key."""
        if "s3" not in self.options.channels:
            return ChannelReport("s3")
        return self._run(StoreChannel(self.store, self._pdfs()), invoice_ids)  # type: ignore[arg-type]

    def sync_payments(self, invoice_ids: Sequence[int]) -> ChannelReport:
        """Mirror each invoice into the payment gateway (lookup first, our idempotency keys, total check)."""
        if "stripe" not in self.options.channels:
            return ChannelReport("stripe")
        return self._run(PaymentChannel(self.gateway, self.options.idempotency_prefix), invoice_ids)  # type: ignore[arg-type]

    def send_emails(self, invoice_ids: Sequence[int]) -> ChannelReport:
        """E-mail each invoice with its PDF attached and a presigned link (deterministic Message-ID)."""
        if "email" not in self.options.channels:
            return ChannelReport("email")
        channel = EmailChannel(
            self.mailer,  # type: ignore[arg-type]
            self._pdfs(),
            self.options,
            self.seller,
            store_enabled="s3" in self.options.channels,
        )
        return self._run(channel, invoice_ids)

    def _run(self, channel, invoice_ids: Sequence[int]) -> ChannelReport:
        report = ChannelReport(channel.name)
        todo = []
        for item in load_items(self.engine, invoice_ids):
            result = self._precheck(item, channel.name)
            if result is None:
                todo.append(item)
            else:
                report.results[item.invoice_id] = result
        if self.dry_run:
            for item in todo:
                try:
                    channel.check(item)
                    report.results[item.invoice_id] = ChannelResult(channel.name, ChannelStatus.DRY_RUN)
                except Exception as exc:  # noqa: BLE001
                    error = self.protocol.error_text(exc)
                    report.results[item.invoice_id] = ChannelResult(channel.name, ChannelStatus.FAILED, error=error)
            return report
        self._fan_out(channel, todo, report)
        return report

    @property
    def _resends_ambiguous(self) -> bool:
        """The operator asked for it (same Message-ID), or the outbox, which dedupes by Message-ID."""
        return self.options.resend_ambiguous_email or isinstance(self.mailer, OutboxMailer)

    def _one(self, channel, item: Item, carry: ledger.Finish | None) -> tuple[ChannelResult, ledger.Finish | None]:
        if channel.name == "email" and not self._resends_ambiguous:
            ambiguous = self.protocol.ambiguous_email(item, carry)
            if ambiguous is not None:
                return ambiguous, None
        return self.protocol.attempt(item, channel, carry, resend_ambiguous=self._resends_ambiguous)

    def _fan_out(self, channel, items: list[Item], report: ChannelReport) -> None:
        """Run ``channel`` for every item in ``io_workers`` threads (each with its own ledger
        connection and mail session). A crash (an exception that is not an ``Exception``) in
        one thread stops the others after their current invoice and is re-raised here."""
        pending = iter(items)
        lock = threading.Lock()
        stop = threading.Event()
        crashes: list[BaseException] = []

        def work() -> None:
            carry = None
            with channel.session(), self.protocol.connection():
                while not stop.is_set():
                    with lock:
                        item = next(pending, None)
                    if item is None:
                        break
                    try:
                        result, carry = self._one(channel, item, carry)
                    except BaseException as exc:
                        stop.set()
                        crashes.append(exc)
                        return
                    report.results[item.invoice_id] = result
                self.protocol.flush(carry)

        workers = min(max(1, self.options.io_workers), len(items))
        if workers <= 1:
            work()
        else:
            threads = [threading.Thread(target=work, name=f"delivery-{channel.name}-{i}") for i in range(workers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if crashes:
            raise crashes[0]

    # -- the outcome -------------------------------------------------------------------------------
    def report(self, invoice_ids: Sequence[int]) -> list[InvoiceDelivery]:
        """Each invoice's delivery as the ledger has it now; spooled PDFs of delivered ones removed."""
        results = []
        for item in load_items(self.engine, invoice_ids):
            inv = item.invoice
            r = InvoiceDelivery(
                item.invoice_id,
                inv.organization_id if inv else "?",
                inv.number if inv else None,
                inv.currency if inv else None,
                inv.total if inv else None,
                error=item.error,
            )
            for channel in self.options.channels:
                r.channels[channel] = self._ledger_result(item, channel)
            if r.ok and not self.dry_run and inv is not None and inv.number:
                self.spool.remove(item.key)
            results.append(r)
        return results

    def _ledger_result(self, item: Item, channel: str) -> ChannelResult:
        row = item.rows.get(channel)
        if self.dry_run:
            return ChannelResult(channel, ChannelStatus.DRY_RUN)
        if row is None:
            return ChannelResult(channel, ChannelStatus.BLOCKED, error="not delivered")
        if row.status == "succeeded":
            return ChannelResult(channel, ChannelStatus.SUCCEEDED, row.attempts, external_id=row.external_id)
        if row.status == "skipped":
            return ChannelResult(channel, ChannelStatus.SKIPPED, row.attempts)
        if row.status == ledger.AMBIGUOUS:
            return ChannelResult(
                channel, ChannelStatus.AMBIGUOUS, row.attempts, external_id=row.external_id, error=row.last_error
            )
        if row.status == "pending":
            return ChannelResult(
                channel, ChannelStatus.FAILED, row.attempts, error=row.last_error or "in progress in another run"
            )
        return ChannelResult(channel, ChannelStatus.FAILED, row.attempts, error=row.last_error)
