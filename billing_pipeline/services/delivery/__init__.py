"""Deliver finalized invoices: PDF -> document store (S3) -> payment gateway (Stripe) -> e-mail.

Exactly once per invoice and channel, across re-runs, crashes and retries:

* the **ledger** (``db.deliveries``, one row per invoice x channel) is read by every step; a
  channel whose row is ``succeeded`` / ``skipped`` is not touched again. Before each side
  effect the row is claimed (``pending``, ``attempts + 1``, committed); right after it the row
  is set ``succeeded`` with the external id and checksum (``protocol``);
* the **side effects are idempotent on their own**, which closes the window between the side
  effect and the ledger commit: the PDF key is fixed per invoice and an identical upload is a
  no-op (different bytes raise ``DocumentConflict``); Stripe writes use idempotency keys derived
  from the invoice number and the invoice is looked up by ``metadata.invoice_id`` before it is
  created (so a re-run after Stripe forgot the keys, 24 h, still creates no duplicate);
* **e-mail** cannot be made idempotent over SMTP. The Message-ID is deterministic and is
  written to the ledger with the claim (row still ``pending``) right before the DATA command,
  on an SMTP session that is already connected and authenticated, and the row is set
  ``succeeded`` as soon as the server accepts. A crash inside that window leaves a ``pending``
  row *with* a Message-ID, which the next run turns ``ambiguous``; so does a failure after the
  server had the whole message (``AmbiguousMailError``: timeout or connection lost after its
  354 to DATA). An ambiguous row is never sent again (the ledger refuses to claim it) until an
  operator resolves it (``db.delivery_views.resolve_ambiguous``, the CLI's ``deliveries
  resolve``) or asks for ``resend_ambiguous_email=True`` (same Message-ID). The local outbox is
  idempotent by Message-ID, so there interrupted e-mails are simply written again.

Channels run in order, one step each (the Dagster ops in ``defs.delivery``); an invoice whose
earlier channel is not final is not touched by the later ones. Transient errors retry with
exponential backoff and jitter; permanent ones are recorded at once. Every error text is
redacted of the configured secrets (``clients.redaction``). ``dry_run`` renders and validates
everything, and sends and writes nothing.

No Dagster here.
"""

from billing_pipeline.db.deliveries import CHANNELS
from billing_pipeline.services.delivery.items import Item, PdfSpool, load_items
from billing_pipeline.services.delivery.options import (
    DeliveryOptions,
    RetryPolicy,
    charges_automatically,
    seller_from_settings,
)
from billing_pipeline.services.delivery.render import render_job, render_pool, warm_up
from billing_pipeline.services.delivery.results import (
    ChannelReport,
    ChannelResult,
    ChannelStatus,
    DeliverySummary,
    InvoiceDelivery,
    format_summary,
    summarize,
)
from billing_pipeline.services.delivery.service import InvoiceDeliveryService

__all__ = [
    "CHANNELS",
    "ChannelReport",
    "ChannelResult",
    "ChannelStatus",
    "DeliveryOptions",
    "DeliverySummary",
    "InvoiceDelivery",
    "InvoiceDeliveryService",
    "Item",
    "PdfSpool",
    "RetryPolicy",
    "charges_automatically",
    "format_summary",
    "load_items",
    "render_job",
    "render_pool",
    "seller_from_settings",
    "summarize",
    "warm_up",
]
