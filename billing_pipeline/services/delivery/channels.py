"""The side-effect channels after the PDF: document store, payment gateway, e-mail.

One small class each: what to build before the claim (``prepare``), the side effect
(``perform``) and the dry-run check. ``InvoiceDeliveryService`` runs them through the ledger
protocol; the PDF step (rendering in processes) is in ``service.py``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from billing_pipeline.clients.documents import DocumentStore
from billing_pipeline.clients.errors import DeliveryError, DocumentNotFound, GatewayTotalMismatch
from billing_pipeline.clients.mailer import Mailer
from billing_pipeline.clients.payments import PaymentGateway
from billing_pipeline.domain import money
from billing_pipeline.domain.settlement import gateway_skip_reason
from billing_pipeline.rendering.email import build_invoice_email
from billing_pipeline.rendering.seller import Seller
from billing_pipeline.services.delivery.items import Item, PdfSpool, sha256
from billing_pipeline.services.delivery.options import DeliveryOptions
from billing_pipeline.services.delivery.protocol import Skip
from billing_pipeline.services.delivery.render import Render

log = logging.getLogger(__name__)


class PdfSource:
    """The PDF bytes of an invoice for the s3 and email steps: spool, stored copy, or a new render."""

    def __init__(self, spool: PdfSpool, render: Render, seller: Seller, store: DocumentStore | None) -> None:
        self.spool = spool
        self.render = render
        self.seller = seller
        self.store = store

    def rendered(self, item: Item) -> bytes:
        data = self.spool.read(item.key)
        if data is None:  # another machine rendered it, or the spool was cleaned: same bytes again
            assert item.invoice is not None and item.org is not None
            data = self.render(item.invoice, item.org, self.seller)
            if not data.startswith(b"%PDF"):
                raise ValueError("renderer returned something that is not a PDF")
            self.spool.write(item.key, data)
        pdf_row = item.rows.get("pdf")
        if pdf_row is not None and pdf_row.checksum and pdf_row.checksum != sha256(data):
            # The invoice is immutable, but the organization (name, address) is not.
            log.warning("invoice %s renders differently than when first delivered", item.number)
        return data

    def stored(self, item: Item, *, verify: bool = False) -> bytes:
        """The copy in the document store (its checksum in the ledger), preferring an identical
        spool file (``verify``: only once the store confirms it still holds the key). A stored
        copy that is gone is rendered and stored again (``restore``)."""
        assert self.store is not None
        checksum = item.rows["s3"].checksum or ""
        data = self.spool.read(item.key)
        if data is not None and sha256(data) == checksum:
            if not verify or self.store.exists(item.key):
                return data
            return self.restore(item, checksum)
        try:
            data = self.store.get(item.key)
        except DocumentNotFound:
            return self.restore(item, checksum)
        if sha256(data) != checksum:
            raise ValueError("the stored PDF does not match the checksum in the delivery ledger")
        return data

    def restore(self, item: Item, checksum: str) -> bytes:
        """The stored PDF is gone (deleted by hand, a lifecycle rule): the invoice renders to the
        same bytes, which go back under the same write-once key. Refused when the bytes differ."""
        assert self.store is not None
        data = self.rendered(item)
        if sha256(data) != checksum:
            raise ValueError(
                f"the stored PDF {item.key} is gone and the invoice now renders differently "
                f"(sha256 {sha256(data)}, ledger checksum {checksum}); restore the original document"
            )
        self.store.put(item.key, data, "application/pdf")
        log.warning("invoice %s: stored PDF %s was missing; rendered and stored again", item.number, item.key)
        return data


class StoreChannel:
    name = "s3"
    commit_at_once = False

    def __init__(self, store: DocumentStore, pdfs: PdfSource) -> None:
        self.store = store
        self.pdfs = pdfs

    def prepare(self, item: Item) -> tuple[Any, str | None]:
        return None, None

    def perform(self, item: Item, prepared: Any) -> tuple[str | None, str | None]:
        stored = self.store.put(item.key, self.pdfs.rendered(item), "application/pdf")
        return stored.url_or_path, stored.sha256_hex

    def check(self, item: Item) -> None:
        item.key  # noqa: B018 - raises for ids that cannot be a document key

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        yield


class PaymentChannel:
    name = "stripe"
    commit_at_once = False

    def __init__(self, gateway: PaymentGateway, idempotency_prefix: str) -> None:
        self.gateway = gateway
        self.idempotency_prefix = idempotency_prefix

    def prepare(self, item: Item) -> tuple[Any, str | None]:
        return None, None

    def perform(self, item: Item, prepared: Any) -> tuple[str | None, str | None]:
        inv, org = item.invoice, item.org
        assert inv is not None and org is not None
        if (reason := gateway_skip_reason(inv)) is not None:
            raise Skip(reason)  # e.g. a zero total paid at finalization: no gateway call at all
        synced = self.gateway.sync_invoice(inv, org, idempotency_prefix=self.idempotency_prefix)
        ours = money.to_minor(inv.total, inv.currency)
        if synced.total_minor != ours or synced.currency.upper() != inv.currency.upper():
            raise GatewayTotalMismatch(inv.number or "?", ours, synced.total_minor, f"{inv.currency}/{synced.currency}")
        if synced.status == "skipped":
            raise Skip("no payment gateway configured")
        return synced.external_id, None

    def check(self, item: Item) -> None:
        inv = item.invoice
        assert inv is not None
        if money.to_minor(inv.total, inv.currency) < 0:
            raise ValueError("negative invoice totals cannot be synced to the payment gateway")

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        yield


class EmailChannel:
    """The message (and its deterministic Message-ID) is built before the claim, so that the
    Message-ID is committed with it right before DATA (the ambiguous-window marker)."""

    name = "email"
    commit_at_once = True

    def __init__(
        self, mailer: Mailer, pdfs: PdfSource, options: DeliveryOptions, seller: Seller, *, store_enabled: bool
    ) -> None:
        self.mailer = mailer
        self.pdfs = pdfs
        self.options = options
        self.seller = seller
        self.store_enabled = store_enabled and pdfs.store is not None

    def _pdf(self, item: Item) -> bytes:
        if self.options.dry_run:
            return self.pdfs.spool.read(item.key) or b"%PDF-1.7 (dry run)"
        if self.store_enabled and item.done("s3") and item.rows["s3"].checksum:
            # A retried e-mail (an earlier attempt has a row) first checks the store still has
            # the PDF it links to; a first attempt follows the upload moments before.
            return self.pdfs.stored(item, verify="email" in item.rows)
        return self.pdfs.rendered(item)

    def message(self, item: Item):
        inv, org = item.invoice, item.org
        assert inv is not None and org is not None
        pdf = self._pdf(item)  # first: it may put a missing stored copy back, which the link points to
        url = None
        if self.store_enabled and not self.options.dry_run:
            url = self.pdfs.store.presigned_url(item.key, self.options.presigned_url_expiry_seconds)  # type: ignore[union-attr]
        return build_invoice_email(
            inv,
            org,
            self.seller,
            pdf=pdf,
            pdf_url=url,
            from_addr=self.options.email_from,
            message_id_domain=self.options.domain,
        )

    def prepare(self, item: Item) -> tuple[Any, str | None]:
        msg = self.message(item)
        return msg, str(msg["Message-ID"])

    def perform(self, item: Item, prepared: Any) -> tuple[str | None, str | None]:
        return self.mailer.send(prepared).message_id, None

    def check(self, item: Item) -> None:
        self.message(item)

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """One SMTP connection per I/O thread for the whole step (``SMTPMailer`` sessions are per thread)."""
        session = getattr(self.mailer, "session", None)
        if session is None or self.options.dry_run:
            yield
            return
        try:
            cm = session()
            cm.__enter__()
        except DeliveryError as exc:
            log.warning("could not open a mail session (%s); each message connects on its own", exc)
            yield
            return
        try:
            yield
        finally:
            cm.__exit__(None, None, None)
