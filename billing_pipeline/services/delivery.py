"""Deliver finalized invoices: PDF -> document store (S3) -> payment gateway (Stripe) -> e-mail.

Exactly once per invoice and channel, across re-runs, crashes and retries:

* the **ledger** (``db.deliveries``, one row per invoice x channel) is read first; a channel
  whose row is ``succeeded`` / ``skipped`` is not touched again. Before each side effect the
  row is claimed (``pending``, ``attempts + 1``, committed); right after it the row is set
  ``succeeded`` with the external id and checksum;
* the **side effects are idempotent on their own**, which closes the window between the side
  effect and the ledger commit: the PDF key is fixed per invoice and an identical upload is a
  no-op (different bytes raise ``DocumentConflict``); Stripe writes use idempotency keys derived
  from the invoice number and the invoice is looked up by ``metadata.invoice_id`` before it is
  created (so a re-run after Stripe forgot the keys, 24 h, still creates no duplicate);
* **e-mail** cannot be made idempotent over SMTP. The Message-ID is deterministic and is
  written to the ledger (row still ``pending``) right before the DATA command, on an SMTP
  session that is already connected and authenticated, and the row is set ``succeeded`` as
  soon as the server accepts. A crash inside that window (milliseconds: the DATA transfer
  and one commit) leaves a ``pending`` row *with* a Message-ID: the next run does **not**
  resend it (at most once) but reports it ``failed`` as ambiguous, naming the Message-ID to
  look up in the mail server's log; ``resend_ambiguous_email=True`` resends it with the same
  Message-ID (mail clients then show one message). The local outbox is idempotent by
  Message-ID, so there ambiguous rows are simply sent again. A connection dropped after
  DATA but before the server's reply is reported as a transient error and retried: that
  can duplicate a message (same Message-ID); SMTP offers no way to tell.

Channels run in order; the first one that fails stops that invoice (its e-mail never goes
out with a wrong Stripe total or a missing PDF). Transient errors (timeouts, connection
errors, 429, 5xx, SMTP 4xx) are retried with exponential backoff and jitter; permanent ones
(validation, card errors, conflicts, total mismatches) are recorded at once. One invoice's
failure never stops the others. Every error text is redacted of the configured secrets
before it reaches the ledger, a log line or a result. ``dry_run`` renders and validates
everything, and sends and writes nothing.

No Dagster here: ``defs.delivery`` wraps this in ops.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import enum
import hashlib
import logging
import multiprocessing
import queue
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine

from billing_pipeline.clients.documents import DocumentStore, invoice_pdf_key
from billing_pipeline.clients.errors import DeliveryError, GatewayTotalMismatch
from billing_pipeline.clients.mailer import Mailer, OutboxMailer
from billing_pipeline.clients.payments import PaymentGateway
from billing_pipeline.db import deliveries as ledger
from billing_pipeline.db import reference
from billing_pipeline.db.invoices import load_invoices
from billing_pipeline.domain import money
from billing_pipeline.domain.model import Invoice, InvoiceStatus, Organization
from billing_pipeline.rendering.email import build_invoice_email
from billing_pipeline.rendering.pdf import render_invoice_pdf
from billing_pipeline.rendering.seller import Seller

log = logging.getLogger(__name__)

CHANNELS = ledger.CHANNELS  # pdf, s3, stripe, email: the order they run in


# --- options ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient errors.

    Attempt ``n`` (1 = first retry) waits ``min(max_delay, base_delay * 2**(n-1))`` scaled by a
    random factor in ``[1 - jitter, 1 + jitter]``, never more than ``max_delay``.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_delay < 0 or self.max_delay < 0 or not 0 <= self.jitter <= 1:
            raise ValueError("retry policy: max_attempts >= 1, delays >= 0, jitter in [0, 1]")

    def delay(self, retry: int, rand: float) -> float:
        base = min(self.max_delay, self.base_delay * 2 ** (retry - 1))
        return min(self.max_delay, base * (1 - self.jitter + 2 * self.jitter * rand))


@dataclass(frozen=True)
class DeliveryOptions:
    pdf: bool = True
    s3: bool = True
    stripe: bool = True
    email: bool = True
    dry_run: bool = False
    presigned_url_expiry_seconds: int = 7 * 24 * 3600
    email_from: str = "billing@example.com"
    message_id_domain: str | None = None  # default: the domain of email_from
    idempotency_prefix: str = "billing"  # prefix of every Stripe idempotency key
    resend_ambiguous_email: bool = False
    render_workers: int = 0  # > 0: render PDFs in that many processes
    io_workers: int = 0  # > 0: that many threads run the channels of different invoices concurrently
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> DeliveryOptions:
        values = dict(
            pdf=settings.enable_pdf,
            s3=settings.enable_s3,
            stripe=settings.enable_stripe,
            email=settings.enable_email,
            dry_run=settings.dry_run,
            presigned_url_expiry_seconds=settings.presigned_url_expiry_seconds,
            email_from=settings.email_from,
        )
        values.update(overrides)
        return cls(**values)

    @property
    def channels(self) -> tuple[str, ...]:
        """Enabled channels in order; the PDF is rendered whenever S3 or e-mail needs it."""
        wanted = {"pdf": self.pdf or self.s3 or self.email, "s3": self.s3, "stripe": self.stripe, "email": self.email}
        return tuple(c for c in CHANNELS if wanted[c])

    @property
    def domain(self) -> str:
        return self.message_id_domain or self.email_from.rsplit("@", 1)[-1].strip(" >")


def seller_from_settings(seller: dict[str, str]) -> Seller:
    return Seller(
        name=seller.get("name", ""),
        address_lines=tuple(p.strip() for p in seller.get("address", "").split(",") if p.strip()),
        tax_id=seller.get("tax_id") or None,
        email=seller.get("email", ""),
        payment_instructions=seller.get("payment_instructions", ""),
        website=seller.get("website") or None,
    )


# --- redaction -------------------------------------------------------------------------
_SECRET_PATTERNS = re.compile(
    r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]+"  # Stripe keys
    r"|\bwhsec_[A-Za-z0-9]+"
    r"|Bearer\s+\S+"
    r"|(?<=://)[^/\s:@]+:[^@\s/]+(?=@)"  # user:password@ in URLs
    r"|(?i:(?:X-Amz-Signature|Signature|X-Amz-Credential|AWSAccessKeyId)=)[^&\s]+"
)


class Redactor:
    """Removes known secrets (exact values) and secret-looking tokens from text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return _SECRET_PATTERNS.sub("[redacted]", text)


# --- results ---------------------------------------------------------------------------
class ChannelStatus(str, enum.Enum):
    SUCCEEDED = "succeeded"  # done by this run
    ALREADY_DONE = "already_done"  # the ledger said succeeded/skipped: nothing sent
    SKIPPED = "skipped"  # nothing to do (no payment gateway)
    FAILED = "failed"
    BLOCKED = "blocked"  # not tried: an earlier channel of this invoice failed
    DRY_RUN = "dry_run"  # validated; nothing sent or written


OK_STATUSES = (ChannelStatus.SUCCEEDED, ChannelStatus.ALREADY_DONE, ChannelStatus.SKIPPED, ChannelStatus.DRY_RUN)


@dataclass(frozen=True)
class ChannelResult:
    channel: str
    status: ChannelStatus
    attempts: int = 0  # side-effect attempts made by this run
    external_id: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in OK_STATUSES


@dataclass
class InvoiceDelivery:
    invoice_id: int
    org_id: str
    number: str | None
    currency: str | None
    total: Decimal | None
    channels: dict[str, ChannelResult] = field(default_factory=dict)
    error: str | None = None  # invoice-level problem (not found, not finalized)

    @property
    def ok(self) -> bool:
        return self.error is None and all(r.ok for r in self.channels.values())

    @property
    def failure(self) -> str | None:
        if self.error:
            return self.error
        for r in self.channels.values():
            if r.status is ChannelStatus.FAILED:
                return f"{r.channel}: {r.error}"
        return None


@dataclass(frozen=True)
class DeliverySummary:
    invoices: int
    delivered: int
    failed: int
    revenue_by_currency: dict[str, Decimal]
    errors_by_channel: dict[str, int]
    sent_by_channel: dict[str, int]  # side effects performed by this run
    failed_orgs: dict[str, str]
    dry_run: bool

    def revenue_text(self) -> str:
        return ", ".join(money.format_amount(v, c) for c, v in sorted(self.revenue_by_currency.items())) or "none"


def summarize(results: Sequence[InvoiceDelivery], *, dry_run: bool = False) -> DeliverySummary:
    revenue: dict[str, Decimal] = {}
    for r in results:
        if r.ok and r.total is not None and r.currency:
            revenue[r.currency] = revenue.get(r.currency, Decimal(0)) + r.total
    errors = {c: 0 for c in CHANNELS}
    sent = {c: 0 for c in CHANNELS}
    for r in results:
        for c, cr in r.channels.items():
            errors[c] += cr.status is ChannelStatus.FAILED
            sent[c] += cr.status is ChannelStatus.SUCCEEDED
    return DeliverySummary(
        invoices=len(results),
        delivered=sum(1 for r in results if r.ok),
        failed=sum(1 for r in results if not r.ok),
        revenue_by_currency=dict(sorted(revenue.items())),
        errors_by_channel=errors,
        sent_by_channel=sent,
        failed_orgs={r.org_id: r.failure or "failed" for r in results if not r.ok},
        dry_run=dry_run,
    )


def format_summary(summary: DeliverySummary, results: Sequence[InvoiceDelivery] = ()) -> str:
    out = ["invoice delivery" + (" (DRY RUN: nothing sent or written)" if summary.dry_run else "")]
    for r in sorted(results, key=lambda r: r.org_id):
        states = " ".join(f"{c}={cr.status.value}" for c, cr in r.channels.items())
        out.append(f"  {r.org_id:<20} {r.number or '-':<18} {states}  {r.failure or ''}".rstrip())
    out.append(
        f"  invoices: {summary.invoices}, delivered: {summary.delivered}, failed: {summary.failed}; "
        f"revenue: {summary.revenue_text()}"
    )
    out.append(
        "  sent: "
        + ", ".join(f"{c} {n}" for c, n in summary.sent_by_channel.items())
        + "; errors: "
        + ", ".join(f"{c} {n}" for c, n in summary.errors_by_channel.items())
    )
    return "\n".join(out)


# --- batch state (picklable: Dagster passes it between ops) -----------------------------
@dataclass
class _Item:
    result: InvoiceDelivery
    invoice: Invoice | None
    org: Organization | None
    rows: dict[str, ledger.LedgerRow]
    pdf: bytes | None = None
    pdf_sha: str | None = None
    stopped: bool = False  # an earlier channel failed (or the invoice is unusable)


@dataclass
class DeliveryBatch:
    items: list[_Item]
    channels: tuple[str, ...]
    dry_run: bool
    options: DeliveryOptions | None = None  # what the later stages of the same run must use

    @property
    def results(self) -> list[InvoiceDelivery]:
        return [i.result for i in self.items]

    def summary(self) -> DeliverySummary:
        return summarize(self.results, dry_run=self.dry_run)

    def drop_pdfs(self) -> None:
        for item in self.items:
            item.pdf = None


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Skip(Exception):
    """Raised by a channel action: nothing to do (recorded as skipped)."""


# --- PDF rendering in worker processes ---------------------------------------------------
def _render_job(render: Callable[..., bytes], invoice: Invoice, org: Organization, seller: Seller) -> bytes:
    return render(invoice, org, seller)


def _warm_up() -> None:
    import billing_pipeline.rendering.pdf  # noqa: F401 - pay WeasyPrint's import once per worker


@contextlib.contextmanager
def render_pool(workers: int) -> Iterator[concurrent.futures.Executor | None]:
    """A process pool (spawned: safe inside threaded hosts such as Dagster), or None for 0."""
    if workers <= 0:
        yield None
        return
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_warm_up
    )
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# --- the service -------------------------------------------------------------------------
class InvoiceDeliveryService:
    """Delivers batches of finalized invoices; see the module docstring for the guarantees.

    Use ``deliver(ids)`` for the whole path, or ``prepare`` then the stages ``render_pdfs``,
    ``upload_pdfs``, ``sync_stripe``, ``send_emails`` (what the Dagster ops do).
    ``store`` / ``gateway`` / ``mailer`` may be None when their channel is disabled.
    ``sleep`` and ``rand`` drive the retry backoff (tests pass fakes).
    """

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
        render: Callable[[Invoice, Organization, Seller], bytes] = render_invoice_pdf,
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
        self.sleep = sleep
        self.rand = rand
        self._local = threading.local()  # the ledger connection of the thread running channels
        channels = self.options.channels
        for channel, client in (("s3", store), ("stripe", gateway), ("email", mailer)):
            if channel in channels and client is None:
                raise ValueError(f"channel {channel!r} is enabled but no client was given")

    def _ledger(self) -> Engine | Connection:
        """Where ledger writes go: this thread's kept connection (``_ledger_connection``), else
        the engine (a pool checkout, and its pre-ping, per write)."""
        return getattr(self._local, "conn", None) or self.engine

    @contextlib.contextmanager
    def _ledger_connection(self) -> Iterator[None]:
        """Keep one database connection for this thread's ledger writes while it runs channels.
        A connection that breaks is invalidated by SQLAlchemy and reconnects on its next use."""
        if getattr(self._local, "conn", None) is not None:
            yield
            return
        with self.engine.connect() as conn:
            self._local.conn = conn
            try:
                yield
            finally:
                self._local.conn = None

    # -- loading ------------------------------------------------------------------------
    def prepare(self, invoice_ids: Sequence[int]) -> DeliveryBatch:
        """Load invoices, organizations and ledger rows for ``invoice_ids``."""
        ids = list(dict.fromkeys(invoice_ids))
        stored = load_invoices(self.engine, ids)
        orgs = reference.get_organizations(self.engine, sorted({s.invoice.organization_id for s in stored.values()}))
        rows = ledger.get_rows(self.engine, ids)
        items = []
        for invoice_id in ids:
            s = stored.get(invoice_id)
            if s is None:
                result = InvoiceDelivery(invoice_id, "?", None, None, None, error=f"invoice {invoice_id} not found")
                items.append(_Item(result, None, None, {}, stopped=True))
                continue
            inv = s.invoice
            result = InvoiceDelivery(invoice_id, inv.organization_id, inv.number, inv.currency, inv.total)
            item = _Item(
                result,
                inv,
                orgs.get(inv.organization_id),
                {c: rows[(invoice_id, c)] for c in CHANNELS if (invoice_id, c) in rows},
            )
            if inv.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.PAID) or not inv.number:
                result.error = f"invoice {invoice_id} is {inv.status.value}; only finalized invoices are delivered"
                item.stopped = True
            elif item.org is None:
                result.error = f"organization {inv.organization_id!r} not found"
                item.stopped = True
            items.append(item)
        return DeliveryBatch(items, self.options.channels, self.options.dry_run, self.options)

    # -- whole path -----------------------------------------------------------------------
    def deliver(self, invoice_ids: Sequence[int], *, chunk_size: int = 500) -> DeliveryBatch:
        """Every enabled channel for every invoice, in chunks.

        With ``render_workers`` > 0 PDFs are rendered in worker processes while this process
        performs the network calls of the invoices already rendered (a pipeline), so the
        network time hides behind rendering. With ``io_workers`` > 0 the channels of several
        invoices run concurrently in that many threads (one invoice's channels always run in
        order, in one thread). PDFs are dropped once an invoice is done.
        """
        ids = list(dict.fromkeys(invoice_ids))
        all_items: list[_Item] = []

        def rendered() -> Iterator[_Item]:
            for start in range(0, len(ids), chunk_size):
                batch = self.prepare(ids[start : start + chunk_size])
                all_items.extend(batch.items)
                yield from self._rendered(batch.items, pool, record_pdf=False)

        with render_pool(self.options.render_workers) as pool:
            self._run_items(rendered(), ("pdf", "s3", "stripe", "email"), drop_pdfs=True)
        return DeliveryBatch(all_items, self.options.channels, self.options.dry_run, self.options)

    def _run_items(self, items: Iterable[_Item], channels: Sequence[str], *, drop_pdfs: bool = False) -> None:
        """Run ``channels`` in order for every item: here, or in ``io_workers`` threads."""
        workers = self.options.io_workers
        if workers <= 0:
            with self._mail_session(channels), self._ledger_connection():
                for item in items:
                    self._run_chain(item, channels)
                    if drop_pdfs:
                        item.pdf = None
            return
        work: queue.Queue = queue.Queue(maxsize=2 * workers)
        failures: list[BaseException] = []
        stop = threading.Event()

        def worker() -> None:
            try:
                with self._mail_session(channels), self._ledger_connection():
                    while True:
                        item = work.get()
                        if item is None or stop.is_set():
                            return
                        self._run_chain(item, channels)
                        if drop_pdfs:
                            item.pdf = None
            except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
                failures.append(exc)
                stop.set()

        threads = [threading.Thread(target=worker, name=f"delivery-io-{i}", daemon=True) for i in range(workers)]
        for t in threads:
            t.start()
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        work.put(item, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException:
            stop.set()  # the producer failed: the workers finish their current invoice only
            raise
        finally:
            for _ in threads:  # one end marker per worker (workers that stopped take none)
                while any(t.is_alive() for t in threads):
                    try:
                        work.put(None, timeout=0.5)
                        break
                    except queue.Full:
                        continue
            for t in threads:
                t.join()
        if failures:
            raise failures[0]

    # -- stages ---------------------------------------------------------------------------
    def render_pdfs(self, batch: DeliveryBatch) -> DeliveryBatch:
        with render_pool(self.options.render_workers if len(batch.items) > 8 else 0) as pool:
            for _ in self._rendered(batch.items, pool):
                pass
        return batch

    def upload_pdfs(self, batch: DeliveryBatch) -> DeliveryBatch:
        self._run_items(batch.items, ("s3",))
        return batch

    def sync_stripe(self, batch: DeliveryBatch) -> DeliveryBatch:
        self._run_items(batch.items, ("stripe",))
        return batch

    def send_emails(self, batch: DeliveryBatch) -> DeliveryBatch:
        self._run_items(batch.items, ("email",))
        batch.drop_pdfs()
        return batch

    # -- pdf ----------------------------------------------------------------------------------
    def _needs_pdf(self, item: _Item) -> bool:
        if item.stopped or "pdf" not in self.options.channels:
            return False
        return any(c in self.options.channels and not self._done(item, c) for c in ("pdf", "s3", "email"))

    def _done(self, item: _Item, channel: str) -> bool:
        row = item.rows.get(channel)
        return row is not None and row.done

    def _rendered(
        self, items: Sequence[_Item], pool: concurrent.futures.Executor | None, *, record_pdf: bool = True
    ) -> Iterator[_Item]:
        """Yield every item in order, its PDF obtained first (and the pdf channel recorded, unless
        ``record_pdf`` is False: then the caller runs the pdf channel)."""
        if pool is None:
            for item in items:
                if self._needs_pdf(item):
                    self._obtain_pdf(item, None, record_pdf)
                yield item
            return
        window: deque[tuple[_Item, concurrent.futures.Future | None]] = deque()
        limit = 4 * getattr(pool, "_max_workers", 2)
        for item in items:
            future = None
            if self._needs_pdf(item) and not self._stored_pdf_available(item):
                future = pool.submit(_render_job, self.render, item.invoice, item.org, self.seller)
            window.append((item, future))
            while len(window) >= limit:
                done_item, done_future = window.popleft()
                if self._needs_pdf(done_item):
                    self._obtain_pdf(done_item, done_future, record_pdf)
                yield done_item
        while window:
            done_item, done_future = window.popleft()
            if self._needs_pdf(done_item):
                self._obtain_pdf(done_item, done_future, record_pdf)
            yield done_item

    def _stored_pdf_available(self, item: _Item) -> bool:
        return self.store is not None and self._done(item, "s3") and bool(item.rows["s3"].checksum)

    def _obtain_pdf(self, item: _Item, future: concurrent.futures.Future | None, record: bool = True) -> None:
        """The PDF bytes for an invoice: the stored copy once uploaded, else a (deterministic) render."""
        assert item.invoice is not None and item.org is not None
        try:
            if self._stored_pdf_available(item):
                data = self.store.get(invoice_pdf_key(item.invoice))  # type: ignore[union-attr]
                if _sha(data) != item.rows["s3"].checksum:
                    raise ValueError("the stored PDF does not match the checksum in the delivery ledger")
            elif future is not None:
                data = future.result()
            else:
                data = self.render(item.invoice, item.org, self.seller)
            if not data.startswith(b"%PDF"):
                raise ValueError("renderer returned something that is not a PDF")
        except Exception as exc:  # noqa: BLE001 - one invoice's PDF never stops the others
            self._fail_pdf(item, exc)
            return
        item.pdf, item.pdf_sha = data, _sha(data)
        pdf_row = item.rows.get("pdf")
        if pdf_row is not None and pdf_row.done:
            if pdf_row.checksum and pdf_row.checksum != item.pdf_sha and not self._done(item, "s3"):
                # The invoice is immutable, but the organization (name, address) is not.
                log.warning("invoice %s renders differently than when first delivered", item.invoice.number)
            item.result.channels["pdf"] = ChannelResult(
                "pdf", ChannelStatus.ALREADY_DONE, external_id=pdf_row.external_id
            )
            return
        if record:
            self._run_chain(item, ("pdf",))

    def _fail_pdf(self, item: _Item, exc: Exception) -> None:
        error = self.redact(f"{type(exc).__name__}: {exc}")
        log.warning("invoice %s: PDF failed: %s", item.result.number, error)
        item.result.channels["pdf"] = ChannelResult("pdf", ChannelStatus.FAILED, error=error)
        item.stopped = True
        if not self.options.dry_run:
            self._record_failure(item, "pdf", error)

    def _record_failure(self, item: _Item, channel: str, error: str) -> None:
        row = item.rows.get(channel)
        try:
            ledger.claim(self._ledger(), item.result.invoice_id, channel, row.attempts if row else None)
        except ledger.ClaimLost:
            return
        ledger.mark_failed(self._ledger(), item.result.invoice_id, channel, error)

    # -- channel actions ---------------------------------------------------------------------
    def _action(self, item: _Item, channel: str) -> Callable[[], tuple[str | None, str | None]]:
        inv, org = item.invoice, item.org
        assert inv is not None and org is not None
        if channel == "pdf":
            return lambda: (invoice_pdf_key(inv), item.pdf_sha)
        if channel == "s3":

            def upload() -> tuple[str | None, str | None]:
                stored = self.store.put(invoice_pdf_key(inv), item.pdf, "application/pdf")  # type: ignore[union-attr]
                return stored.url_or_path, stored.sha256_hex

            return upload
        if channel == "stripe":

            def sync() -> tuple[str | None, str | None]:
                synced = self.gateway.sync_invoice(inv, org, idempotency_prefix=self.options.idempotency_prefix)  # type: ignore[union-attr]
                ours = money.to_minor(inv.total, inv.currency)
                if synced.total_minor != ours or synced.currency.upper() != inv.currency.upper():
                    raise GatewayTotalMismatch(
                        inv.number or "?", ours, synced.total_minor, f"{inv.currency}/{synced.currency}"
                    )
                if synced.status == "skipped":
                    raise _Skip("no payment gateway configured")
                return synced.external_id, None

            return sync
        if channel == "email":
            # The message is built, and its Message-ID recorded with the claim, by ``_attempt``.
            def send() -> tuple[str | None, str | None]:
                sent = self.mailer.send(item_msg[0])  # type: ignore[union-attr]
                return sent.message_id, None

            item_msg: list = []
            send.message = item_msg  # type: ignore[attr-defined]
            return send
        raise ValueError(channel)

    def _email(self, item: _Item):
        inv, org = item.invoice, item.org
        url = None
        if "s3" in self.options.channels and self.store is not None and not self.options.dry_run:
            url = self.store.presigned_url(invoice_pdf_key(inv), self.options.presigned_url_expiry_seconds)
        return build_invoice_email(
            inv,
            org,
            self.seller,
            pdf=item.pdf,
            pdf_url=url,
            from_addr=self.options.email_from,
            message_id_domain=self.options.domain,
        )

    def _dry_run_check(self, item: _Item, channel: str) -> None:
        inv = item.invoice
        if channel in ("pdf", "s3"):
            invoice_pdf_key(inv)
        elif channel == "email":
            self._email(item)
        elif channel == "stripe" and money.to_minor(inv.total, inv.currency) < 0:
            raise ValueError("negative invoice totals cannot be synced to the payment gateway")

    # -- one channel for one invoice, with the ledger and retries -----------------------------
    # A channel's success is not committed on its own: it is carried (``ledger.Finish``) into the
    # transaction that claims the invoice's next channel (or written at the end of the chain), so
    # an invoice costs one ledger commit per channel instead of two. The claim is still committed
    # before every side effect; a crash between a side effect and that commit leaves the row
    # ``pending``, and the idempotent side effect is repeated harmlessly by the next run.
    def _run_chain(self, item: _Item, channels: Sequence[str]) -> None:
        carry: ledger.Finish | None = None
        for channel in channels:
            carry = self._run_channel(item, channel, carry)
        self._flush(carry)

    def _flush(self, carry: ledger.Finish | None) -> None:
        if carry is not None:
            ledger.write_finish(self._ledger(), carry)

    def _run_channel(self, item: _Item, channel: str, carry: ledger.Finish | None = None) -> ledger.Finish | None:
        """Run one channel; returns its success still to be written (or None)."""
        if channel not in self.options.channels or channel in item.result.channels:
            return carry
        if item.stopped:
            if not item.result.error:
                item.result.channels[channel] = ChannelResult(channel, ChannelStatus.BLOCKED)
            return carry
        row = item.rows.get(channel)
        if row is not None and row.done:
            item.result.channels[channel] = ChannelResult(
                channel, ChannelStatus.ALREADY_DONE, external_id=row.external_id
            )
            return carry
        if channel in ("s3", "email") and item.pdf is None:
            item.result.channels[channel] = ChannelResult(channel, ChannelStatus.BLOCKED, error="no PDF")
            item.stopped = True
            return carry
        if self.options.dry_run:
            try:
                self._dry_run_check(item, channel)
            except Exception as exc:  # noqa: BLE001
                self._finish(
                    item,
                    ChannelResult(channel, ChannelStatus.FAILED, error=self.redact(f"{type(exc).__name__}: {exc}")),
                )
                return carry
            self._finish(item, ChannelResult(channel, ChannelStatus.DRY_RUN))
            return carry
        if channel == "email" and self._ambiguous_email(item, row, carry):
            return None
        if channel == "pdf" and carry is None:
            # Rendering has no side effect outside this process: nothing to claim. Its success
            # (one attempt) is written with the next channel's claim.
            key, sha = self._action(item, "pdf")()
            self._finish(item, ChannelResult("pdf", ChannelStatus.SUCCEEDED, 1, external_id=key))
            return ledger.Finish(item.result.invoice_id, "pdf", key, sha, count_attempt=True)
        result, carry = self._attempt(item, channel, row, carry)
        self._finish(item, result)
        return carry

    def _ambiguous_email(self, item: _Item, row: ledger.LedgerRow | None, carry: ledger.Finish | None) -> bool:
        """A pending e-mail row with a Message-ID: a run died between SMTP DATA and the commit."""
        if row is None or row.status != "pending" or not row.external_id:
            return False
        if self.options.resend_ambiguous_email or isinstance(self.mailer, OutboxMailer):
            return False
        error = (
            f"ambiguous: an earlier run stopped while sending {row.external_id} (attempt {row.attempts}); "
            "it may have been delivered. Check the mail server log for this Message-ID, then either mark "
            "the row succeeded or re-run with resend_ambiguous_email=true (same Message-ID)."
        )
        ledger.mark_failed(self._ledger(), item.result.invoice_id, "email", error, keep_external_id=True, finish=carry)
        self._finish(item, ChannelResult("email", ChannelStatus.FAILED, error=error))
        return True

    def _attempt(
        self, item: _Item, channel: str, row: ledger.LedgerRow | None, carry: ledger.Finish | None
    ) -> tuple[ChannelResult, ledger.Finish | None]:
        invoice_id = item.result.invoice_id
        action = self._action(item, channel)
        seen = row.attempts if row is not None else None
        tries = 0
        while True:
            marker = None
            prepare_error: Exception | None = None
            if channel == "email":
                # Built before the claim so that its Message-ID is committed with it, right before DATA.
                try:
                    msg = self._email(item)
                    marker = str(msg["Message-ID"])
                    action.message[:] = [msg]  # type: ignore[attr-defined]
                except Exception as exc:  # noqa: BLE001 - recorded as this attempt's failure below
                    prepare_error = exc
            try:
                seen = ledger.claim(self._ledger(), invoice_id, channel, seen, finish=carry, sending=marker)
            except ledger.ClaimLost as exc:
                return ChannelResult(channel, ChannelStatus.FAILED, tries, error=str(exc)), None
            carry = None  # committed with the claim
            tries += 1
            try:
                if prepare_error is not None:
                    raise prepare_error
                external_id, checksum = action()
            except _Skip as skip:
                done = ledger.Finish(invoice_id, channel, None, None, "skipped")
                return ChannelResult(channel, ChannelStatus.SKIPPED, tries, error=str(skip)), done
            except Exception as exc:  # noqa: BLE001 - classified below, isolated per invoice
                transient = isinstance(exc, DeliveryError) and exc.transient
                error = self.redact(f"{type(exc).__name__}: {exc}")
                ledger.mark_failed(self._ledger(), invoice_id, channel, error)
                if transient and tries < self.options.retry.max_attempts:
                    delay = self.options.retry.delay(tries, self.rand())
                    log.info(
                        "invoice %s %s: transient error (%s), retry %d in %.2fs",
                        item.result.number,
                        channel,
                        error,
                        tries,
                        delay,
                    )
                    self.sleep(delay)
                    continue
                log.warning("invoice %s %s failed after %d attempt(s): %s", item.result.number, channel, tries, error)
                return ChannelResult(channel, ChannelStatus.FAILED, tries, error=error), None
            if channel == "email":
                # Commit at once: this is what closes the ambiguous window.
                ledger.mark_succeeded(self._ledger(), invoice_id, channel, external_id=external_id, checksum=checksum)
                return ChannelResult(channel, ChannelStatus.SUCCEEDED, tries, external_id=external_id), None
            done = ledger.Finish(invoice_id, channel, external_id, checksum)
            return ChannelResult(channel, ChannelStatus.SUCCEEDED, tries, external_id=external_id), done

    def _finish(self, item: _Item, result: ChannelResult) -> None:
        item.result.channels[result.channel] = result
        if not result.ok:
            item.stopped = True

    @contextlib.contextmanager
    def _mail_session(self, channels: Sequence[str] = ("email",)) -> Iterator[None]:
        """One SMTP connection for a whole stage (the Message-ID marker then precedes DATA only).

        Per thread: ``SMTPMailer`` keeps one connection per thread that opened a session.
        """
        session = getattr(self.mailer, "session", None)
        if session is None or "email" not in channels or "email" not in self.options.channels or self.options.dry_run:
            yield
            return
        try:
            cm = session()
            cm.__enter__()
        except DeliveryError as exc:
            log.warning("could not open a mail session (%s); each message connects on its own", self.redact(str(exc)))
            yield
            return
        try:
            yield
        finally:
            cm.__exit__(None, None, None)


def deliverable_ids(engine: Engine, interval: str, period_key: str, org_ids: Sequence[str] | None) -> dict[str, int]:
    """org id -> finalized invoice id for one period (organizations without one are left out)."""
    return ledger.finalized_invoice_ids(engine, interval, period_key, org_ids)


__all__ = [
    "CHANNELS",
    "RetryPolicy",
    "DeliveryOptions",
    "Redactor",
    "ChannelStatus",
    "ChannelResult",
    "InvoiceDelivery",
    "DeliverySummary",
    "DeliveryBatch",
    "InvoiceDeliveryService",
    "summarize",
    "format_summary",
    "seller_from_settings",
    "render_pool",
    "deliverable_ids",
]
