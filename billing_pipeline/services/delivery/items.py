"""The invoices a delivery step works on, read fresh from the database by every step.

Each step (op) loads its invoices, organizations and ledger rows itself, so a step that is
re-executed from failure sees what earlier steps (of this run or any other) recorded, never a
snapshot taken at the start of the run.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from billing_pipeline.clients.documents import invoice_pdf_key
from billing_pipeline.clients.files import write_replacing
from billing_pipeline.db import deliveries as ledger
from billing_pipeline.db import reference
from billing_pipeline.db.invoices import load_invoices
from billing_pipeline.domain.model import Invoice, InvoiceStatus, Organization

if TYPE_CHECKING:
    from sqlalchemy import Engine


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Item:
    """One invoice with its organization and ledger rows (channel -> row)."""

    invoice_id: int
    invoice: Invoice | None
    org: Organization | None
    rows: dict[str, ledger.LedgerRow]
    error: str | None = None  # not deliverable at all (not found, not finalized, no organization)

    @property
    def number(self) -> str | None:
        return self.invoice.number if self.invoice is not None else None

    @property
    def key(self) -> str:
        """The document key of the invoice's PDF (fixed per invoice)."""
        assert self.invoice is not None
        return invoice_pdf_key(self.invoice)

    def done(self, channel: str) -> bool:
        row = self.rows.get(channel)
        return row is not None and row.done


def load_items(engine: Engine, invoice_ids: Sequence[int]) -> list[Item]:
    """Invoices, organizations and ledger rows for ``invoice_ids`` (in that order, deduplicated)."""
    ids = list(dict.fromkeys(invoice_ids))
    stored = load_invoices(engine, ids)
    orgs = reference.get_organizations(engine, sorted({s.invoice.organization_id for s in stored.values()}))
    rows = ledger.get_rows(engine, ids)
    items = []
    for invoice_id in ids:
        s = stored.get(invoice_id)
        if s is None:
            items.append(Item(invoice_id, None, None, {}, error=f"invoice {invoice_id} not found"))
            continue
        inv = s.invoice
        item = Item(
            invoice_id,
            inv,
            orgs.get(inv.organization_id),
            {c: rows[(invoice_id, c)] for c in ledger.CHANNELS if (invoice_id, c) in rows},
        )
        if inv.status not in (InvoiceStatus.FINALIZED, InvoiceStatus.PAID) or not inv.number:
            item.error = f"invoice {invoice_id} is {inv.status.value}; only finalized invoices are delivered"
        elif item.org is None:
            item.error = f"organization {inv.organization_id!r} not found"
        items.append(item)
    return items


class PdfSpool:
    """Rendered PDFs between the pdf step and the s3 / email steps: one file per document key.

    A cache, not a record: the ledger holds each PDF's checksum, a missing file is rendered
    again (the bytes are deterministic) and files are removed once their invoice is delivered.
    It keeps PDF bytes out of Dagster's storage: steps pass invoice ids, never bytes.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="billing-pdfs-"))

    def path(self, key: str) -> Path:
        return self.folder / key

    def read(self, key: str) -> bytes | None:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            return None

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def write(self, key: str, data: bytes) -> None:
        write_replacing(self.path(key), data)

    def remove(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
